from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.align_uniform import (
    AlignUniformLoss,
    align_uniform_loss,
    alignment_loss,
    uniformity_loss,
)

D64 = torch.float64


# ----------------------------------------------------------------------------- loop references
def ref_align(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    total = a.new_zeros(())
    for i in range(a.shape[0]):
        dist = torch.sqrt(sum((a[i, k] - b[i, k]) ** 2 for k in range(a.shape[1])))
        total = total + dist**alpha
    return total / a.shape[0]


def ref_unif(x: torch.Tensor, t: float) -> torch.Tensor:
    n = x.shape[0]
    terms = []
    for i, j in itertools.combinations(range(n), 2):
        d2 = sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1]))
        terms.append(torch.exp(-t * d2))
    return torch.log(torch.stack(terms).sum() / len(terms))


def _views(n: int = 6, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    return a, b


# ----------------------------------------------------------------------------- reference parity
@pytest.mark.parametrize("alpha", [2.0, 1.0, 3.0])
def test_alignment_matches_loop_reference(alpha: float) -> None:
    a, b = _views()
    ours = alignment_loss(a, b, alpha=alpha)
    ref = ref_align(F.normalize(a, dim=1), F.normalize(b, dim=1), alpha)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (a, b))
    g_ref = torch.autograd.grad(ref, (a, b))
    for x, y in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("t", [2.0, 0.5])
@pytest.mark.parametrize("chunk_size", [None, 1, 2, 5, 100])
@pytest.mark.parametrize("normalize", [True, False])
def test_uniformity_matches_loop_reference(
    t: float, chunk_size: int | None, normalize: bool
) -> None:
    x, _ = _views(n=7, d=3, seed=1)
    ours = uniformity_loss(x, t=t, normalize=normalize, chunk_size=chunk_size)
    ref = ref_unif(F.normalize(x, dim=1) if normalize else x, t)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours, x)
    (g_ref,) = torch.autograd.grad(ref, x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


def test_uniformity_equals_pdist_form_larger_batch_and_uneven_tiles() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(203, 16, generator=g, dtype=D64, requires_grad=True)
    ref = torch.pdist(x).pow(2).mul(-2.0).exp().mean().log()
    (g_ref,) = torch.autograd.grad(ref, x)
    for chunk in (7, 64, 203, 1000):
        ours = uniformity_loss(x, t=2.0, normalize=False, chunk_size=chunk)
        (g_ours,) = torch.autograd.grad(ours, x)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)


def test_combined_matches_loop_reference_with_weights() -> None:
    a, b = _views(n=5, d=3, seed=2)
    ours = align_uniform_loss(a, b, align_weight=0.7, unif_weight=1.3, alpha=2.0, t=1.5)
    na, nb = F.normalize(a, dim=1), F.normalize(b, dim=1)
    ref = 0.7 * ref_align(na, nb, 2.0) + 1.3 * (ref_unif(na, 1.5) + ref_unif(nb, 1.5)) / 2
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (a, b))
    g_ref = torch.autograd.grad(ref, (a, b))
    for x, y in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- closed forms
def test_closed_form_antipodal_and_identical_points() -> None:
    # Two antipodal unit vectors: one pair at squared distance 4 => log e^{-4t} = -4t.
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=D64)
    assert uniformity_loss(x, t=2.0).item() == pytest.approx(-8.0, abs=1e-12)
    # All points equal: every potential is 1 => log 1 = 0.
    same = torch.ones(5, 3, dtype=D64)
    assert uniformity_loss(same).item() == pytest.approx(0.0, abs=1e-12)
    # Regular simplex of 3 points on the circle: all squared distances 3.
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=D64)
    tri = torch.stack([ang.cos(), ang.sin()], dim=1)
    assert uniformity_loss(tri, t=1.0).item() == pytest.approx(-3.0, abs=1e-12)
    # Alignment of orthogonal unit vectors: ||e1 - e2||^alpha = sqrt(2)^alpha.
    e1 = torch.tensor([[1.0, 0.0]], dtype=D64)
    e2 = torch.tensor([[0.0, 1.0]], dtype=D64)
    assert alignment_loss(e1, e2, alpha=3.0).item() == pytest.approx(2**1.5, abs=1e-12)
    assert alignment_loss(e1, e1).item() == 0.0


def test_alignment_gradient_finite_at_identical_pairs() -> None:
    a = torch.randn(4, 3, dtype=D64, requires_grad=True)
    for alpha in (2.0, 1.0):
        loss = alignment_loss(a, a.detach().clone(), alpha=alpha)
        (g,) = torch.autograd.grad(loss, a)
        assert torch.isfinite(g).all()


def test_reduction_modes() -> None:
    a, b = _views()
    per = alignment_loss(a, b, reduction="none")
    assert per.shape == (6,)
    torch.testing.assert_close(per.mean(), alignment_loss(a, b))
    torch.testing.assert_close(per.sum(), alignment_loss(a, b, reduction="sum"))


def test_half_precision_accumulates_in_fp32() -> None:
    a, b = _views()
    out = align_uniform_loss(a.detach().half(), b.detach().half())
    assert out.dtype == torch.float32
    ref = align_uniform_loss(a.detach().half().double(), b.detach().half().double())
    assert abs(out.item() - ref.item()) < 1e-4


# ----------------------------------------------------------------------------- peer parity
def _lightly_hypersphere() -> type:
    from peers import load_lightly_loss

    load_lightly_loss()  # skips with the import error if lightly cannot be imported
    # HypersphereLoss is not re-exported from lightly.loss in lightly 1.6.0.
    from lightly.loss.hypersphere_loss import HypersphereLoss

    return HypersphereLoss


@pytest.mark.parametrize(("t", "lam", "alpha"), [(1.0, 1.0, 2.0), (2.0, 0.5, 2.0), (0.7, 2.0, 1.5)])
def test_parity_with_lightly_hypersphere(t: float, lam: float, alpha: float) -> None:
    hypersphere = _lightly_hypersphere()
    a, b = _views(n=16, d=8, seed=4)
    theirs = hypersphere(t=t, lam=lam, alpha=alpha)(a, b)
    ours = AlignUniformLoss(align_weight=1.0, unif_weight=lam, alpha=alpha, t=t, chunk_size=5)(a, b)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (a, b))
    g_theirs = torch.autograd.grad(theirs, (a, b))
    for x, y in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_lightly_default_t_differs_from_paper_default() -> None:
    # Negative control for the parity above: our paper default t=2 is not lightly's t=1.
    hypersphere = _lightly_hypersphere()
    a, b = _views(n=16, d=8, seed=4)
    assert not torch.allclose(AlignUniformLoss()(a, b), hypersphere()(a, b))
    torch.testing.assert_close(AlignUniformLoss(t=1.0)(a, b), hypersphere()(a, b))


def test_negative_control_different_inputs_give_different_gradients() -> None:
    a, b = _views(n=8, d=4, seed=5)
    c = b.detach().clone()
    c[0] += 0.5
    c.requires_grad_(True)
    g1 = torch.autograd.grad(align_uniform_loss(a, b), a)[0]
    g2 = torch.autograd.grad(align_uniform_loss(a, c), a)[0]
    assert not torch.allclose(g1, g2)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_error_naming_argument() -> None:
    a, b = _views()
    with pytest.raises(ValueError, match="alpha"):
        alignment_loss(a, b, alpha=0.0)
    with pytest.raises(ValueError, match="^t "):
        uniformity_loss(a, t=-1.0)
    with pytest.raises(ValueError, match="x needs at least 2 rows"):
        uniformity_loss(a[:1])
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        alignment_loss(a, b[:3])
    with pytest.raises(ValueError, match="chunk_size"):
        uniformity_loss(a, chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        alignment_loss(a, b, reduction="avg")
    with pytest.raises(ValueError, match="unif_weight"):
        AlignUniformLoss(unif_weight=-1.0)
    with pytest.raises(ValueError, match="a must be a floating-point"):
        alignment_loss(torch.ones(3, 2, dtype=torch.long), b[:3])
    bad = a.detach().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        uniformity_loss(bad)
    with pytest.raises(ValueError, match="b contains NaN"):
        AlignUniformLoss()(a, bad)
    # check_values=False skips the host-synced value check.
    assert torch.isnan(uniformity_loss(bad, check_values=False))
