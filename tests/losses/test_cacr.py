from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.cacr import CACRLoss, cacr_loss

D64 = torch.float64


def _sq(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return sum((u[k] - w[k]) ** 2 for k in range(u.shape[0]))


def _softmax(vals: list[torch.Tensor]) -> list[torch.Tensor]:
    m = max(float(v.detach()) for v in vals)
    e = [torch.exp(v - m) for v in vals]
    tot = sum(e)
    return [x / tot for x in e]


def ref_cacr(views, alpha, beta, t_pos, t_neg, prior=0.0, detach=False):
    """Loops over samples, query views, positive views, view pairs and negatives."""
    z = F.normalize(views, dim=-1)
    b, v, _ = z.shape
    dt = (lambda t: t.detach()) if detach else (lambda t: t)
    total = z.new_zeros(())
    for i in range(b):
        ca = z.new_zeros(())
        for x in range(v):
            costs = [_sq(z[i, x], z[i, p]) for p in range(v) if p != x]
            weights = _softmax([dt(c) / t_pos for c in costs])
            ca = ca + sum(w * alpha * c for w, c in zip(weights, costs, strict=True))
        ca = ca / v
        cr = z.new_zeros(())
        pairs = 0
        for x in range(v):
            for y in range(x + 1, v):
                costs = [-beta * _sq(z[i, x], z[j, y]) for j in range(b) if j != i]
                weights = _softmax([dt(c) / (beta * t_neg) for c in costs])
                neg = sum(w * c for w, c in zip(weights, costs, strict=True))
                if prior > 0:
                    neg = (-prior * _sq(z[i, x], z[i, y]) + neg) / (1 - prior)
                cr = cr + neg
                pairs += 1
        total = total + ca + cr / pairs
    return total / b


def _views(b=5, v=3, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, v, d, generator=g, dtype=D64, requires_grad=True)


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize(
    ("alpha", "beta", "t_pos", "t_neg", "prior"),
    [(1.0, 1.0, 1.0, 1.0, 0.0), (0.5, 2.0, 0.3, 1 / 0.9, 0.0), (1.0, 1.0, 2.0, 0.5, 0.1)],
)
def test_matches_loop_reference_both_modes(detach, alpha, beta, t_pos, t_neg, prior) -> None:
    views = _views()
    ours = cacr_loss(
        views,
        alpha=alpha,
        beta=beta,
        pos_temperature=t_pos,
        neg_temperature=t_neg,
        debias_prior=prior,
        detach_weights=detach,
    )
    ref = ref_cacr(views, alpha, beta, t_pos, t_neg, prior, detach)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(ours, views)
    (g2,) = torch.autograd.grad(ref, views)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)


def test_modes_same_value_different_gradient() -> None:
    # Negative control for the two modes: the stop-gradient must change the gradient.
    views = _views(seed=1)
    a = cacr_loss(views)
    b = cacr_loss(views, detach_weights=True)
    torch.testing.assert_close(a, b)
    (ga,) = torch.autograd.grad(a, views)
    (gb,) = torch.autograd.grad(b, views)
    assert (ga - gb).abs().max().item() > 1e-6


def test_closed_form_two_samples_two_views() -> None:
    # Sample 0: both views e1; sample 1: both views e2. CA = 0; each CR has one negative
    # with weight 1 and cost -beta * ||e1 - e2||^2 = -2 beta.
    e1, e2 = torch.tensor([1.0, 0.0], dtype=D64), torch.tensor([0.0, 1.0], dtype=D64)
    views = torch.stack([torch.stack([e1, e1]), torch.stack([e2, e2])])
    assert cacr_loss(views, beta=1.5).item() == pytest.approx(-3.0, abs=1e-12)
    # Views of each sample orthogonal, and samples identical: CA = alpha * 2, CR = -beta * 2.
    views = torch.stack([torch.stack([e1, e2]), torch.stack([e1, e2])])
    assert cacr_loss(views, alpha=2.0, beta=1.0).item() == pytest.approx(4.0 - 2.0, abs=1e-12)


def test_attraction_weights_favour_distant_positives() -> None:
    # Three views, anchor view 0 at angle 0, views at 30 and 90 degrees: CA_0 with T+ -> 0
    # approaches the farthest cost, with T+ large the mean cost.
    ang = [0.0, math.pi / 6, math.pi / 2]
    one = torch.tensor([[math.cos(a), math.sin(a)] for a in ang], dtype=D64)
    views = torch.stack([one, -one])  # second sample far away
    costs = [2 - 2 * math.cos(math.pi / 6), 2.0]
    near_max = cacr_loss(views, pos_temperature=1e-3, reduction="none")
    near_mean = cacr_loss(views, pos_temperature=1e6, reduction="none")
    cr = cacr_loss(views, alpha=1e-12, reduction="none")  # essentially the CR part
    ca_hot = (near_max - cr)[0].item()
    ca_flat = (near_mean - cr)[0].item()
    # view 0 and view 2 see the 90-degree cost as their farthest, view 1 sees 2-2cos(60deg)=1.
    assert ca_hot == pytest.approx((2.0 + 1.0 + 2.0) / 3, abs=1e-6)
    assert ca_flat == pytest.approx(
        (sum(costs) / 2 + (costs[0] + 1.0) / 2 + (2.0 + 1.0) / 2) / 3, abs=1e-5
    )


def test_reduction_module_half_precision() -> None:
    views = _views()
    per = cacr_loss(views, reduction="none")
    assert per.shape == (5,)
    torch.testing.assert_close(per.mean(), cacr_loss(views))
    torch.testing.assert_close(per.sum(), cacr_loss(views, reduction="sum"))
    torch.testing.assert_close(CACRLoss(detach_weights=True)(views), cacr_loss(views))
    out = cacr_loss(views.detach().half())
    assert out.dtype == torch.float32
    assert abs(out.item() - cacr_loss(views.detach().half().double()).item()) < 1e-4


def test_negative_control_other_input_changes_gradient() -> None:
    views = _views(seed=3)
    other = views.detach().clone()
    other[0, 1] += 0.7
    other.requires_grad_(True)
    g1 = torch.autograd.grad(cacr_loss(views), views)[0]
    g2 = torch.autograd.grad(cacr_loss(other), other)[0]
    assert not torch.allclose(g1, g2)


def test_bad_inputs_raise_value_error_naming_argument() -> None:
    views = _views()
    with pytest.raises(ValueError, match=r"views must have shape \(batch, views, dim\)"):
        cacr_loss(views[:, 0])
    with pytest.raises(ValueError, match="views >= 2"):
        cacr_loss(views[:, :1])
    with pytest.raises(ValueError, match="views needs at least 2 rows"):
        cacr_loss(views[:1])
    with pytest.raises(ValueError, match="neg_temperature"):
        cacr_loss(views, neg_temperature=0.0)
    with pytest.raises(ValueError, match="pos_temperature"):
        CACRLoss(pos_temperature=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        CACRLoss(alpha=float("inf"))
    with pytest.raises(ValueError, match="debias_prior"):
        CACRLoss(debias_prior=1.0)
    bad = views.detach().clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="views contains NaN"):
        cacr_loss(bad)
