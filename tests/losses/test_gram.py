from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.gram import GRAMLoss, gram_loss, gram_volume

D64 = torch.float64


# ----------------------------------------------------------------------------- loop references
def ref_volume_qr(vectors: list[torch.Tensor]) -> torch.Tensor:
    """Volume of the parallelotope spanned by `vectors`, via QR (independent of det(A A^T))."""
    a = torch.stack([v / v.norm() for v in vectors], dim=1)  # (d, k)
    r = torch.linalg.qr(a).R
    vol = a.new_ones(())
    for t in range(r.shape[0]):
        vol = vol * r[t, t].abs()
    return vol


def ref_volumes(anchor: torch.Tensor, others: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    return [
        [ref_volume_qr([anchor[i]] + [o[j] for o in others]) for j in range(others[0].shape[0])]
        for i in range(anchor.shape[0])
    ]


def ref_ce_row(logits: list[torch.Tensor], target: int, ls: float) -> torch.Tensor:
    m = max(float(x.detach()) for x in logits)
    log_z = m + torch.log(sum(torch.exp(x - m) for x in logits))
    nll = -(logits[target] - log_z)
    smooth = sum(-(x - log_z) for x in logits) / len(logits)
    return (1 - ls) * nll + ls * smooth


def ref_gram_loss(anchor, others, tau, ls, symmetric=True):
    vol = ref_volumes(anchor, others)
    b = anchor.shape[0]
    per = []
    for i in range(b):
        row = ref_ce_row([-vol[i][j] / tau for j in range(b)], i, ls)
        if symmetric:
            col = ref_ce_row([-vol[j][i] / tau for j in range(b)], i, ls)
            row = 0.5 * (row + col)
        per.append(row)
    return torch.stack(per)


def _inputs(b: int, k: int, d: int, seed: int = 0, requires_grad: bool = True):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(b, d, dtype=D64, generator=g) for _ in range(k)]
    return [x.requires_grad_(requires_grad) for x in xs]


# ----------------------------------------------------------------------------- volumes
def test_k2_volume_is_sine_closed_form() -> None:
    a, b = _inputs(5, 2, 7, requires_grad=False)
    cos = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    expected = torch.sqrt(1 - cos**2)
    torch.testing.assert_close(gram_volume(a, b, eps=0.0), expected, rtol=1e-12, atol=1e-12)


def test_orthonormal_volume_is_one_and_collinear_is_zero() -> None:
    eye = torch.eye(4, dtype=D64)
    vol = gram_volume(eye[:1], eye[1:2], eye[2:3], eye[3:4], eps=0.0)
    torch.testing.assert_close(vol, torch.ones(1, 1, dtype=D64))
    x = torch.randn(1, 6, dtype=D64)
    vol = gram_volume(x, 3 * x, -x, eps=0.0)
    assert float(vol) < 1e-7


@pytest.mark.parametrize("k", [2, 3, 4])
def test_volume_matches_qr_loop_reference_values_and_grads(k: int) -> None:
    anchor, *others = _inputs(4, k, 6, seed=k)
    others = [o[:3].detach().clone().requires_grad_() for o in others]  # B1 = 4, B2 = 3
    vol = gram_volume(anchor, *others, eps=0.0)
    ref = torch.stack([torch.stack(r) for r in ref_volumes(anchor, others)])
    torch.testing.assert_close(vol, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn(4, 3, dtype=D64)
    got = torch.autograd.grad((vol * w).sum(), [anchor, *others])
    want = torch.autograd.grad((ref * w).sum(), [anchor, *others])
    for g1, g2 in zip(got, want, strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def test_eps_only_changes_near_degenerate_volumes_and_keeps_gradients_finite() -> None:
    a, b, c = _inputs(5, 3, 8, seed=3, requires_grad=False)
    torch.testing.assert_close(gram_volume(a, b, c), gram_volume(a, b, c, eps=0.0))
    # perfectly aligned tuples: reference sqrt(|det|) has an infinite/NaN gradient at det = 0
    x = torch.randn(3, 8, dtype=D64, requires_grad=True)
    vol = gram_volume(x, x, x)
    assert torch.allclose(vol.diagonal(), torch.full((3,), 1e-4, dtype=D64))
    loss = gram_loss(x, x, x)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all()
    # the reference's sqrt(|det|) has a NaN gradient at det = 0 (the failure the clamp removes) ...
    y = x.detach().clone().requires_grad_()
    z = F.normalize(y, dim=-1)
    tuples = torch.stack([z, z, z], dim=1)  # (3, k, d): each row's aligned tuple
    raw = torch.linalg.det(tuples @ tuples.transpose(1, 2)).abs().sqrt()
    (grad_ref,) = torch.autograd.grad(raw.sum(), y)
    assert not torch.isfinite(grad_ref).all()
    # ... and with eps = 0 the volume is 0 there with a zero gradient, not NaN
    (grad_zero,) = torch.autograd.grad(gram_volume(y, y, y, eps=0.0).diagonal().sum(), y)
    assert torch.isfinite(grad_zero).all()


# ----------------------------------------------------------------------------- loss
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_loss_matches_loop_reference(k: int, symmetric: bool, ls: float) -> None:
    xs = _inputs(5, k, 6, seed=10 + k)
    tau = 0.3
    ref = ref_gram_loss(xs[0], xs[1:], tau, ls, symmetric)
    for reduction, want in (("none", ref), ("sum", ref.sum()), ("mean", ref.mean())):
        got = gram_loss(
            *xs, temperature=tau, label_smoothing=ls, symmetric=symmetric, reduction=reduction
        )
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    got_g = torch.autograd.grad(
        gram_loss(*xs, temperature=tau, label_smoothing=ls, symmetric=symmetric), xs
    )
    want_g = torch.autograd.grad(ref.mean(), xs)
    for g1, g2 in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-11)


def test_defaults_and_tensor_temperature() -> None:
    xs = _inputs(6, 3, 5, seed=4)
    tau = torch.tensor(0.07, dtype=D64, requires_grad=True)
    loss = gram_loss(*xs, temperature=tau)
    torch.testing.assert_close(loss, ref_gram_loss(xs[0], xs[1:], 0.07, 0.1).mean())
    loss.backward()
    assert tau.grad is not None and torch.isfinite(tau.grad)


def test_negative_control_shuffled_tuples_change_value_and_gradient() -> None:
    a, b, c = _inputs(6, 3, 5, seed=5)
    base = gram_loss(a, b, c)
    (g1,) = torch.autograd.grad(base, a)
    perm = torch.tensor([1, 0, 2, 3, 4, 5])
    other = gram_loss(a, b, c[perm])  # breaks one tuple
    (g2,) = torch.autograd.grad(other, a)
    assert not torch.allclose(base, other)
    assert not torch.allclose(g1, g2)


def test_aligned_tuples_have_lower_loss_than_random() -> None:
    g = torch.Generator().manual_seed(6)
    t = torch.randn(8, 16, generator=g)
    aligned = gram_loss(t, t + 0.05 * torch.randn(8, 16, generator=g), t)
    rand = gram_loss(t, torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g))
    assert aligned < rand


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_accumulate_in_fp32(dtype: torch.dtype) -> None:
    xs = _inputs(6, 3, 8, seed=7, requires_grad=False)
    want = gram_loss(*xs)
    got = gram_loss(*(x.to(dtype) for x in xs))
    assert got.dtype == torch.float32
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_module_matches_function() -> None:
    xs = _inputs(5, 3, 4, seed=8, requires_grad=False)
    crit = GRAMLoss(temperature=0.2, label_smoothing=0.0, reduction="sum")
    torch.testing.assert_close(
        crit(*xs), gram_loss(*xs, temperature=0.2, label_smoothing=0.0, reduction="sum")
    )


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_value_error_naming_the_argument() -> None:
    a, b, c = _inputs(4, 3, 5, requires_grad=False)
    with pytest.raises(ValueError, match="others"):
        gram_volume(a)
    with pytest.raises(ValueError, match="embedding dimension"):
        gram_volume(a, torch.randn(4, 6, dtype=D64))
    with pytest.raises(ValueError, match="others\\[1\\]"):
        gram_volume(a, b, c[:3])
    with pytest.raises(ValueError, match="same batch size"):
        gram_loss(a, b[:3], c[:3])
    with pytest.raises(ValueError, match="at least 2 rows"):
        gram_loss(a[:1], b[:1])
    nan = a.clone()
    nan[0, 0] = math.nan
    with pytest.raises(ValueError, match="anchor contains NaN"):
        gram_loss(nan, b)
    gram_loss(nan, b, check_values=False)  # switchable
    with pytest.raises(ValueError, match="temperature"):
        gram_loss(a, b, temperature=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        gram_loss(a, b, label_smoothing=1.0)
    with pytest.raises(ValueError, match="reduction"):
        gram_loss(a, b, reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        gram_volume(a, b, eps=-1.0)
    with pytest.raises(ValueError, match="floating-point"):
        gram_volume(a.long(), b)
    with pytest.raises(ValueError, match="temperature"):
        GRAMLoss(temperature=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        GRAMLoss(label_smoothing=-0.1)
