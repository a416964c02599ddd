"""WhitenedCSE: shuffled group whitening properties and the multi-positive InfoNCE."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from contrastkit.losses.whitened_cse import (
    ShuffledGroupWhitening,
    WhitenedCSELoss,
    group_whiten,
    whitened_cse_loss,
)

D64 = torch.float64


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _correlated(n: int, d: int, seed: int) -> Tensor:
    """Features with strongly correlated channels and a non-zero mean."""
    return _randn(n, d, seed=seed) @ _randn(d, d, seed=seed + 1) + 3.0


def _cov(x: Tensor) -> Tensor:
    c = x - x.mean(0, keepdim=True)
    return c.T @ c / x.shape[0]


# ----------------------------------------------------------------------------- whitening
@pytest.mark.parametrize("num_groups", [1, 2, 4])
def test_whitened_groups_have_identity_covariance(num_groups: int) -> None:
    x = _correlated(40, 8, seed=0)
    size = 8 // num_groups
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(1))
    out = group_whiten(x, num_groups=num_groups, permutation=perm, eps=0.0)
    for g in range(num_groups):
        channels = perm[g * size : (g + 1) * size]  # group g after the shuffle
        torch.testing.assert_close(_cov(out[:, channels]), torch.eye(size, dtype=D64))
    torch.testing.assert_close(out.mean(0), torch.zeros(8, dtype=D64), rtol=0, atol=1e-12)
    # Negative control: channels of *different* groups stay correlated; the input was not white.
    assert float(_cov(x)[0, 1].abs()) > 1e-2
    if num_groups > 1:
        full = _cov(out)
        assert float((full - torch.eye(8, dtype=D64)).abs().max()) > 1e-2


def test_whitening_is_zca_of_each_group() -> None:
    # out_g = X_g W with W symmetric and W Σ_g W = I (W = Σ_g^{-1/2}, not any whitening).
    x = _correlated(30, 6, seed=2)
    out = group_whiten(x, num_groups=2, eps=0.0)
    for g in range(2):
        xg = x[:, 3 * g : 3 * g + 3] - x[:, 3 * g : 3 * g + 3].mean(0)
        w = torch.linalg.lstsq(xg, out[:, 3 * g : 3 * g + 3]).solution
        torch.testing.assert_close(w, w.T)
        torch.testing.assert_close(w @ _cov(xg) @ w, torch.eye(3, dtype=D64))
        assert bool((torch.linalg.eigvalsh(w) > 0).all())


def test_eps_regularises_eigenvalues() -> None:
    x = _correlated(30, 4, seed=3)
    out = group_whiten(x, num_groups=1, eps=0.5)
    lam = torch.linalg.eigvalsh(_cov(x))
    torch.testing.assert_close(torch.linalg.eigvalsh(_cov(out)), (lam / (lam + 0.5)).sort().values)


def test_permutation_is_undone() -> None:
    x = _correlated(20, 8, seed=4)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))
    shuffled = group_whiten(x, num_groups=4, permutation=perm)
    torch.testing.assert_close(
        shuffled, group_whiten(x[:, perm], num_groups=4)[:, torch.argsort(perm)]
    )
    assert (
        float((shuffled - group_whiten(x, num_groups=4)).abs().max()) > 1e-3
    )  # a different grouping


def ref_whiten_detached(x: Tensor, num_groups: int, eps: float) -> Tensor:
    """Loop reference: per group, centre and multiply by a constant Σ^{-1/2} (Σ from a copy)."""
    size = x.shape[1] // num_groups
    outs = []
    for g in range(num_groups):
        xg = x[:, g * size : (g + 1) * size]
        c = xg - xg.mean(0, keepdim=True)
        cd = c.detach()
        cov = cd.T @ cd / x.shape[0]
        lam, u = torch.linalg.eigh(cov)
        w = u @ torch.diag((lam + eps).rsqrt()) @ u.T
        outs.append(c @ w)
    return torch.cat(outs, dim=1)


def test_gradient_treats_whitening_matrix_as_constant() -> None:
    x = _correlated(16, 6, seed=6)
    weights = _randn(16, 6, seed=7)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (g_ours,) = torch.autograd.grad((group_whiten(x1, num_groups=3) * weights).sum(), x1)
    (g_ref,) = torch.autograd.grad((ref_whiten_detached(x2, 3, 1e-5) * weights).sum(), x2)
    torch.testing.assert_close(g_ours, g_ref)
    # Negative control: differentiating through W gives a different gradient.
    x3 = x.clone().requires_grad_(True)
    (g_full,) = torch.autograd.grad(
        (group_whiten(x3, num_groups=3, whitening_gradient=True) * weights).sum(), x3
    )
    assert float((g_full - g_ours).abs().max()) > 1e-4


def test_full_whitening_gradient_passes_gradcheck() -> None:
    x = _correlated(10, 4, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: group_whiten(t, num_groups=2, whitening_gradient=True), (x,), eps=1e-6, atol=1e-5
    )


def test_module_shapes_and_independent_shuffles() -> None:
    torch.manual_seed(0)
    x = _correlated(64, 16, seed=9)
    sgw = ShuffledGroupWhitening(16, num_groups=4, num_pos=3, eps=0.0)
    out = sgw(x)
    assert out.shape == (64, 3, 16)
    assert float((out[:, 0] - out[:, 1]).abs().max()) > 1e-3  # different shuffles
    for p in range(3):  # each positive is white within its (unknown) groups: unit variance
        torch.testing.assert_close(out[:, p].var(0, unbiased=False), torch.ones(16, dtype=D64))
    plain = ShuffledGroupWhitening(16, num_groups=4, num_pos=2, shuffle=False)(x)
    torch.testing.assert_close(plain[:, 0], plain[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(plain[:, 0], group_whiten(x, num_groups=4))
    views = torch.stack([x, _correlated(64, 16, seed=10)], dim=1)  # (B, V, D)
    assert sgw(views).shape == (64, 2, 16)
    assert ShuffledGroupWhitening(16, num_groups=4)(x.float()).dtype == torch.float32


def test_whitening_bad_inputs() -> None:
    x = _randn(10, 8, seed=11)
    with pytest.raises(ValueError, match="num_groups must divide"):
        group_whiten(x, num_groups=3)
    with pytest.raises(ValueError, match="num_groups must be a positive"):
        ShuffledGroupWhitening(8, num_groups=0)
    with pytest.raises(ValueError, match="num_pos"):
        ShuffledGroupWhitening(8, num_groups=2, num_pos=0)
    with pytest.raises(ValueError, match="eps"):
        group_whiten(x, num_groups=2, eps=-1.0)
    with pytest.raises(ValueError, match="permutation"):
        group_whiten(x, num_groups=2, permutation=torch.arange(7))
    with pytest.raises(ValueError, match="x needs at least 2 rows"):
        group_whiten(x[:1], num_groups=2)
    with pytest.raises(ValueError, match="x must have 8 features"):
        ShuffledGroupWhitening(8, num_groups=2)(_randn(10, 6, seed=0))
    with pytest.raises(ValueError, match="x must have shape"):
        ShuffledGroupWhitening(8, num_groups=2)(_randn(8, seed=0))


# ----------------------------------------------------------------------------- loss
def ref_loss(views: Tensor, tau: float) -> Tensor:
    """Σ_p CE(cos(z_0, z_p) / τ), each CE a mean over the batch; loops over anchors/columns."""
    b, num_pos, _ = views.shape
    total = views.new_zeros(())
    for p in range(1, num_pos):
        for i in range(b):
            logits = [
                torch.nn.functional.cosine_similarity(views[i, 0], views[j, p], dim=0) / tau
                for j in range(b)
            ]
            total = total + (torch.log(sum(torch.exp(x) for x in logits)) - logits[i]) / b
    return total


def _value_and_grads(fn: Callable[..., Tensor], inputs: Sequence[Tensor]):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves)
    return out.detach(), [g.detach() for g in grads]


@pytest.mark.parametrize("chunk_size", [None, 3, 1])
@pytest.mark.parametrize("num_pos", [2, 3])
def test_loss_matches_loop_reference(chunk_size: int | None, num_pos: int) -> None:
    views = _randn(7, num_pos, 5, seed=12)
    vo, (go,) = _value_and_grads(
        lambda v: whitened_cse_loss(v, temperature=0.05, chunk_size=chunk_size), [views]
    )
    vr, (gr,) = _value_and_grads(lambda v: ref_loss(v, 0.05), [views])
    torch.testing.assert_close(vo, vr, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(go, gr, rtol=1e-10, atol=1e-10)
    # Negative control: a different third view changes the loss and gradient.
    if num_pos == 3:
        moved = views.clone()
        moved[:, 2] += 0.5 * _randn(7, 5, seed=13)
        vm, (gm,) = _value_and_grads(lambda v: whitened_cse_loss(v, temperature=0.05), [moved])
        assert abs(float(vm - vo)) > 1e-3 and float((gm - go).abs().max()) > 1e-3


def test_loss_reductions_and_module() -> None:
    views = _randn(6, 3, 4, seed=14)
    per = whitened_cse_loss(views, reduction="none")
    assert per.shape == (6,)
    torch.testing.assert_close(per.mean(), whitened_cse_loss(views))
    torch.testing.assert_close(per.sum(), whitened_cse_loss(views, reduction="sum"))
    assert torch.equal(
        WhitenedCSELoss(temperature=0.1)(views), whitened_cse_loss(views, temperature=0.1)
    )


def test_loss_bad_inputs() -> None:
    with pytest.raises(ValueError, match="views must have shape"):
        whitened_cse_loss(_randn(6, 4, seed=0))
    with pytest.raises(ValueError, match="views >= 2"):
        whitened_cse_loss(_randn(6, 1, 4, seed=0))
    with pytest.raises(ValueError, match="temperature"):
        whitened_cse_loss(_randn(6, 2, 4, seed=0), temperature=0.0)
    with pytest.raises(ValueError, match="views needs at least 2 rows"):
        whitened_cse_loss(_randn(1, 2, 4, seed=0))
