from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from peers import load_symile

from contrastkit.losses.symile import SymileLoss, multilinear_inner_product, symile_loss

D64 = torch.float64


# ----------------------------------------------------------------------------- loop references
def mip(vectors: list[torch.Tensor]) -> torch.Tensor:
    total = vectors[0].new_zeros(())
    for t in range(vectors[0].shape[0]):
        term = vectors[0].new_ones(())
        for v in vectors:
            term = term * v[t]
        total = total + term
    return total


def ce(logits: list[torch.Tensor], target: int) -> torch.Tensor:
    m = max(float(x.detach()) for x in logits)
    log_z = m + torch.log(sum(torch.exp(x - m) for x in logits))
    return log_z - logits[target]


def ref_n_squared(xs: list[torch.Tensor], tau: float) -> torch.Tensor:
    """Per-sample loss: mean over anchors of CE over every tuple of non-anchor rows."""
    xs = [F.normalize(x, dim=1) for x in xs]
    b, k = xs[0].shape[0], len(xs)
    per = []
    for i in range(b):
        terms = []
        for a in range(k):
            others = [x for m, x in enumerate(xs) if m != a]
            tuples = list(itertools.product(range(b), repeat=k - 1))
            logits = [
                mip([xs[a][i]] + [o[j] for o, j in zip(others, t, strict=True)]) / tau
                for t in tuples
            ]
            terms.append(ce(logits, tuples.index((i,) * (k - 1))))
        per.append(sum(terms) / k)
    return torch.stack(per)


def ref_n(xs: list[torch.Tensor], tau: float, seed: int) -> torch.Tensor:
    """O(N) form with the permutations replayed from `seed` in the documented order."""
    xs = [F.normalize(x, dim=1) for x in xs]
    b, k = xs[0].shape[0], len(xs)
    g = torch.Generator().manual_seed(seed)
    perms = {}
    for a in range(k):
        for m in range(k):
            if m != a:
                perms[a, m] = torch.randperm(b, generator=g).tolist()
    per = []
    for i in range(b):
        terms = []
        for a in range(k):
            logits = []
            for j in range(b):
                if j == i:
                    vecs = [x[i] for x in xs]
                else:
                    vecs = [xs[a][i]] + [xs[m][perms[a, m][j]] for m in range(k) if m != a]
                logits.append(mip(vecs) / tau)
            terms.append(ce(logits, i))
        per.append(sum(terms) / k)
    return torch.stack(per)


def _inputs(b: int, k: int, d: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, dtype=D64, generator=g).requires_grad_() for _ in range(k)]


def _assert_grads(out1, out2, xs, rtol=1e-8, atol=1e-11) -> None:
    g1 = torch.autograd.grad(out1, xs)
    g2 = torch.autograd.grad(out2, xs)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize("k", [2, 3, 4])
def test_n_squared_matches_loop_reference(k: int) -> None:
    xs = _inputs(4 if k < 4 else 3, k, 5, seed=k)
    ref = ref_n_squared(xs, 0.5)
    got = symile_loss(*xs, temperature=0.5, negative_sampling="n_squared", reduction="none")
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    _assert_grads(symile_loss(*xs, temperature=0.5, negative_sampling="n_squared"), ref.mean(), xs)


@pytest.mark.parametrize("k", [2, 3])
def test_n_matches_loop_reference_with_replayed_rng(k: int) -> None:
    xs = _inputs(5, k, 4, seed=20 + k)
    ref = ref_n(xs, 0.2, seed=7)
    g = torch.Generator().manual_seed(7)
    got = symile_loss(*xs, temperature=0.2, generator=g, reduction="none")
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    g = torch.Generator().manual_seed(7)
    _assert_grads(symile_loss(*xs, temperature=0.2, generator=g), ref.mean(), xs)


def test_k2_n_squared_is_the_clip_loss_closed_form() -> None:
    a, b = _inputs(6, 2, 5, seed=1)
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.1
    t = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t))
    got = symile_loss(a, b, temperature=0.1, negative_sampling="n_squared")
    torch.testing.assert_close(got, clip, rtol=1e-12, atol=1e-12)


def test_multilinear_inner_product() -> None:
    x, y, z = _inputs(3, 3, 4, seed=2)
    want = torch.stack([mip([x[i], y[i], z[i]]) for i in range(3)])
    torch.testing.assert_close(multilinear_inner_product(x, y, z), want)


# ----------------------------------------------------------------------------- peer parity
@pytest.mark.parametrize("k", [3, 4])
def test_parity_with_symile_package_n_squared(k: int) -> None:
    symile = load_symile()
    xs = _inputs(4, k, 6, seed=30 + k)
    tau = 0.25  # symile's logit_scale = 1 / temperature
    ref = symile.Symile("n_squared")([F.normalize(x, dim=1) for x in xs], 1 / tau)
    got = symile_loss(*xs, temperature=tau, negative_sampling="n_squared")
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    _assert_grads(got, ref, xs)
    # normalize=False on raw inputs is symile's own contract (the model normalises)
    raw_ref = symile.Symile("n_squared")(xs, 1 / tau)
    raw = symile_loss(*xs, temperature=tau, negative_sampling="n_squared", normalize=False)
    torch.testing.assert_close(raw, raw_ref, rtol=1e-12, atol=1e-12)
    _assert_grads(raw, raw_ref, xs)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_parity_with_symile_package_n_under_shared_seed(k: int) -> None:
    symile = load_symile()
    xs = _inputs(6, k, 5, seed=40 + k)
    torch.manual_seed(123)  # symile draws from the global RNG
    ref = symile.Symile("n")([F.normalize(x, dim=1) for x in xs], 1 / 0.1)
    got = symile_loss(*xs, temperature=0.1, generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    _assert_grads(got, ref, xs)


# ----------------------------------------------------------------------------- properties
def test_rng_is_explicit_and_used() -> None:
    xs = _inputs(8, 3, 4, seed=3)
    state = torch.get_rng_state()
    a = symile_loss(*xs, temperature=0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    b = symile_loss(*xs, temperature=0.3, generator=torch.Generator().manual_seed(1))
    c = symile_loss(*xs, temperature=0.3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # negative control: other shuffles, other negatives


def test_negative_control_broken_tuple_changes_value_and_gradient() -> None:
    x, y, z = _inputs(6, 3, 5, seed=4)
    base = symile_loss(x, y, z, temperature=0.2, negative_sampling="n_squared")
    (g1,) = torch.autograd.grad(base, x)
    other = symile_loss(x, y, z[[1, 0, 2, 3, 4, 5]], temperature=0.2, negative_sampling="n_squared")
    (g2,) = torch.autograd.grad(other, x)
    assert not torch.allclose(base, other)
    assert not torch.allclose(g1, g2)


def test_tensor_temperature_gets_gradient_and_module_matches() -> None:
    xs = _inputs(5, 3, 4, seed=5)
    tau = torch.tensor(0.3, dtype=D64, requires_grad=True)
    loss = symile_loss(*xs, temperature=tau, negative_sampling="n_squared")
    loss.backward()
    assert tau.grad is not None and torch.isfinite(tau.grad)
    crit = SymileLoss(temperature=0.3, negative_sampling="n_squared", reduction="sum")
    torch.testing.assert_close(
        crit(*xs),
        symile_loss(*xs, temperature=0.3, negative_sampling="n_squared", reduction="sum"),
    )
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    torch.testing.assert_close(
        SymileLoss(temperature=0.3)(*xs, generator=g1),
        symile_loss(*xs, temperature=0.3, generator=g2),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_accumulates_in_fp32(dtype: torch.dtype) -> None:
    xs = [x.detach() for x in _inputs(6, 3, 8, seed=6)]
    want = symile_loss(*xs, temperature=0.1, negative_sampling="n_squared")
    got = symile_loss(*(x.to(dtype) for x in xs), temperature=0.1, negative_sampling="n_squared")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=5e-2, atol=5e-2)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_value_error_naming_the_argument() -> None:
    x, y, z = (t.detach() for t in _inputs(4, 3, 5))
    with pytest.raises(ValueError, match="at least 2 modalities"):
        symile_loss(x, temperature=0.1)
    with pytest.raises(ValueError, match="modalities\\[2\\]"):
        symile_loss(x, y, z[:3], temperature=0.1)
    with pytest.raises(ValueError, match="modalities\\[1\\]"):
        symile_loss(x, torch.randn(4, 6, dtype=D64), temperature=0.1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        symile_loss(x[:1], y[:1], temperature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        symile_loss(x, y, temperature=0.0)
    with pytest.raises(ValueError, match="negative_sampling"):
        symile_loss(x, y, temperature=0.1, negative_sampling="n2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        symile_loss(x, y, temperature=0.1, reduction="avg")  # type: ignore[arg-type]
    bad = x.clone()
    bad[1, 1] = math.inf
    with pytest.raises(ValueError, match="modalities\\[0\\] contains NaN or inf"):
        symile_loss(bad, y, temperature=0.1)
    with pytest.raises(ValueError, match="temperature"):
        SymileLoss(temperature=-0.1)
    with pytest.raises(ValueError, match="negative_sampling"):
        SymileLoss(temperature=0.1, negative_sampling="all")  # type: ignore[arg-type]
