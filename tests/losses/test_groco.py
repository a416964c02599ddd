from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peers import load_diffsort

from contrastkit.losses._sorting_network import (
    SoftSortingNetwork,
    bitonic_comparators,
    odd_even_comparators,
    soft_sort,
)
from contrastkit.losses.groco import GroCoLoss, groco_loss, groco_sorting_loss

D64 = torch.float64


# ----------------------------------------------------------------------------- loop references
def ref_soft_sort_odd_even(vals: list[torch.Tensor], steepness: float):
    """Scalar odd-even transposition network with Cauchy comparators (float64)."""
    n = len(vals)
    x = list(vals)
    one, zero = vals[0].new_ones(()), vals[0].new_zeros(())
    p = [[one if r == c else zero for c in range(n)] for r in range(n)]
    for layer in range(n):
        for a in range(layer % 2, n - 1, 2):
            b = a + 1
            alpha = torch.atan(steepness * (x[b] - x[a])) / math.pi + 0.5
            x[a], x[b] = alpha * x[a] + (1 - alpha) * x[b], (1 - alpha) * x[a] + alpha * x[b]
            for r in range(n):
                p[r][a], p[r][b] = (
                    alpha * p[r][a] + (1 - alpha) * p[r][b],
                    (1 - alpha) * p[r][a] + alpha * p[r][b],
                )
    return x, p


def bce(p: torch.Tensor, t: float) -> torch.Tensor:
    p = p.clamp(0, 1)
    log_p = torch.log(p).clamp_min(-100)
    log_1mp = torch.log(1 - p).clamp_min(-100)
    return -(t * log_p + (1 - t) * log_1mp)


def ref_anchor_loss(pos: list[torch.Tensor], neg: list[torch.Tensor], steepness: float):
    n_neg = len(neg)
    seq = sorted(neg, key=lambda t: float(t.detach())) + sorted(
        pos, key=lambda t: float(t.detach())
    )
    _, p = ref_soft_sort_odd_even(seq, steepness)
    n = len(seq)
    l_pos, l_neg = seq[0].new_zeros(()), seq[0].new_zeros(())
    for e in range(n):
        in_pos = sum(p[e][j] for j in range(n_neg, n))
        in_neg = sum(p[e][j] for j in range(n_neg))
        t = 1.0 if e >= n_neg else 0.0
        l_pos = l_pos + bce(in_pos, t)
        l_neg = l_neg + bce(in_neg, 1 - t)
    return 0.5 * (l_pos / n + l_neg / n)


def cos(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return sum(u[t] * v[t] for t in range(u.shape[0])) / (u.norm() * v.norm())


def ref_groco(views, topk, steepness, stop_grad=True, n_pos=None, anchor_views=None):
    b, v_count, _ = views.shape
    n_pos = v_count if n_pos is None else n_pos
    anchors = range(v_count) if anchor_views is None else anchor_views
    part = views.detach() if stop_grad else views
    per = []
    for i in range(b):
        terms = []
        for v in anchors:
            pos = [cos(views[i, v], part[i, p]) for p in range(n_pos) if p != v]
            negs = [cos(views[i, v], part[j, v]) for j in range(b) if j != i]
            negs = sorted(negs, key=lambda t: float(t.detach()), reverse=True)[:topk]
            terms.append(ref_anchor_loss(pos, negs, steepness))
        per.append(sum(terms) / len(terms))
    return torch.stack(per)


def groco_with_diffsort(views, topk, steepness, diffsort):
    """The reference's semantics, with the peer's DiffSortNet as the sorter (vectorised)."""
    b, v_count, _ = views.shape
    z = F.normalize(views, dim=-1)
    part = z.detach()
    sorter = diffsort.DiffSortNet("odd_even", topk + v_count - 1, steepness=steepness)
    total = 0.0
    for v in range(v_count):
        pos = torch.stack([(z[:, v] * part[:, p]).sum(-1) for p in range(v_count) if p != v], 1)
        neg = (z[:, v] @ part[:, v].T).masked_fill(torch.eye(b, dtype=torch.bool), -math.inf)
        neg = torch.flip(torch.topk(neg, topk, dim=1).values, dims=[1])
        sims = torch.cat((neg, torch.sort(pos, dim=1).values), dim=1)
        _, perm = sorter(sims)
        target = torch.eye(sims.shape[1], dtype=D64).expand_as(perm)
        pp = perm[:, :, topk:].sum(2).clamp(0, 1)
        pn = perm[:, :, :topk].sum(2).clamp(0, 1)
        tp = target[:, :, topk:].sum(2)
        tn = target[:, :, :topk].sum(2)
        total = total + 0.5 * (F.binary_cross_entropy(pp, tp) + F.binary_cross_entropy(pn, tn))
    return total / v_count


def _views(b: int, v: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, v, d, dtype=D64, generator=g).requires_grad_()


# ----------------------------------------------------------------------------- sorter
@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
@pytest.mark.parametrize("distribution", ["cauchy", "logistic", "reciprocal", "gaussian"])
def test_sorter_parity_with_diffsort(network: str, distribution: str) -> None:
    diffsort = load_diffsort()
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 8, 11):
        for steepness in (1.0, 10.0):
            x = torch.randn(4, n, dtype=D64, generator=g).requires_grad_()
            peer = diffsort.DiffSortNet(network, n, steepness=steepness, distribution=distribution)
            xs_ref, p_ref = peer(x)
            xs, p = soft_sort(x, network=network, steepness=steepness, distribution=distribution)
            torch.testing.assert_close(p, p_ref, rtol=1e-12, atol=1e-13)
            torch.testing.assert_close(xs, xs_ref, rtol=1e-12, atol=1e-13)
            w = torch.randn(4, n, n, dtype=D64, generator=g)
            (g1,) = torch.autograd.grad((p * w).sum() + xs.sum(), x)
            (g2,) = torch.autograd.grad((p_ref * w).sum() + xs_ref.sum(), x)
            # diffsort's gaussian backward stores sigma = 1 / steepness as a float32 tensor
            tol = 1e-7 if distribution == "gaussian" else 1e-10
            torch.testing.assert_close(g1, g2, rtol=tol, atol=tol)


def test_sorter_scalar_reference_and_two_element_closed_form() -> None:
    x = torch.tensor([[0.7, -0.2]], dtype=D64)
    _, p = soft_sort(x, steepness=2.0)
    alpha = math.atan(2.0 * (-0.2 - 0.7)) / math.pi + 0.5
    want = torch.tensor([[[alpha, 1 - alpha], [1 - alpha, alpha]]], dtype=D64)
    torch.testing.assert_close(p, want)
    vals = torch.randn(7, dtype=D64)
    xs_ref, p_ref = ref_soft_sort_odd_even(list(vals), 3.0)
    xs, p = soft_sort(vals[None], steepness=3.0)
    torch.testing.assert_close(p[0], torch.stack([torch.stack(r) for r in p_ref]))
    torch.testing.assert_close(xs[0], torch.stack(xs_ref))


@pytest.mark.parametrize("network", ["odd_even", "bitonic"])
def test_sorter_hard_limit_sorts_and_is_doubly_stochastic(network: str) -> None:
    g = torch.Generator().manual_seed(1)
    for n in (1, 2, 3, 6, 7, 9, 16):
        x = torch.randn(20, n, dtype=D64, generator=g)
        xs, p = soft_sort(x, network=network, steepness=1e9)  # type: ignore[arg-type]
        torch.testing.assert_close(xs, x.sort(dim=1).values)
        torch.testing.assert_close(torch.einsum("bi,bij->bj", x, p), x.sort(dim=1).values)
        _, p = soft_sort(x, network=network, steepness=0.5)  # type: ignore[arg-type]
        torch.testing.assert_close(p.sum(1), torch.ones(20, n, dtype=D64))
        torch.testing.assert_close(p.sum(2), torch.ones(20, n, dtype=D64))


def test_comparator_layers_are_disjoint() -> None:
    for build in (odd_even_comparators, bitonic_comparators):
        for n in (2, 5, 8, 13):
            for layer in build(n):
                wires = [w for c in layer for w in c]
                assert len(wires) == len(set(wires)) and all(0 <= w < n for w in wires)


# ----------------------------------------------------------------------------- loss
@pytest.mark.parametrize(
    ("v", "n_pos", "topk", "anchors"),
    [(2, None, 3, None), (3, None, 2, None), (3, 2, 2, None), (3, 2, 4, (0, 2))],
)
def test_loss_matches_loop_reference(v, n_pos, topk, anchors) -> None:
    views = _views(6, v, 5, seed=v + topk)
    ref = ref_groco(views, topk, 1.0, n_pos=n_pos, anchor_views=anchors)
    kw = dict(topk_neg=topk, num_positive_views=n_pos, anchor_views=anchors)
    torch.testing.assert_close(
        groco_loss(views, reduction="none", **kw), ref, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(groco_loss(views, reduction="sum", **kw), ref.sum())
    g1 = torch.autograd.grad(groco_loss(views, **kw), views)[0]
    g2 = torch.autograd.grad(ref.mean(), views)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-11)


def test_loss_without_stop_grad_matches_loop_reference() -> None:
    views = _views(5, 2, 4, seed=3)
    ref = ref_groco(views, 2, 2.0, stop_grad=False)
    got = groco_loss(views, topk_neg=2, steepness=2.0, stop_grad=False)
    torch.testing.assert_close(got, ref.mean(), rtol=1e-10, atol=1e-12)
    g1 = torch.autograd.grad(got, views)[0]
    g2 = torch.autograd.grad(ref.mean(), views)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("v", [2, 3])
def test_parity_with_reference_semantics_on_diffsort(v: int) -> None:
    diffsort = load_diffsort()
    views = _views(12, v, 8, seed=11 + v)
    ref = groco_with_diffsort(views, 10, 1.0, diffsort)
    got = groco_loss(views, topk_neg=10)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-13)
    g1 = torch.autograd.grad(got, views)[0]
    g2 = torch.autograd.grad(ref, views)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_two_element_closed_form() -> None:
    views = _views(4, 2, 3, seed=5)
    z = F.normalize(views.detach(), dim=-1)
    want = []
    for i in range(4):
        terms = []
        for v in range(2):
            c_pos = float(z[i, v] @ z[i, 1 - v])
            c_neg = max(float(z[i, v] @ z[j, v]) for j in range(4) if j != i)
            terms.append(-math.log(0.5 + math.atan(3.0 * (c_pos - c_neg)) / math.pi))
        want.append(sum(terms) / 2)
    got = groco_loss(views, topk_neg=1, steepness=3.0, reduction="none")
    torch.testing.assert_close(got, torch.tensor(want, dtype=D64))


def test_stop_grad_gradients_only_reach_the_anchor() -> None:
    views = _views(6, 2, 4, seed=6)
    (g,) = torch.autograd.grad(groco_loss(views, topk_neg=3, anchor_views=(0,)), views)
    assert torch.count_nonzero(g[:, 0]) > 0
    assert torch.count_nonzero(g[:, 1]) == 0
    (g,) = torch.autograd.grad(
        groco_loss(views, topk_neg=3, anchor_views=(0,), stop_grad=False), views
    )
    assert torch.count_nonzero(g[:, 1]) > 0  # negative control


def test_separated_groups_have_lower_loss_than_mixed() -> None:
    g = torch.Generator().manual_seed(7)
    centers = F.normalize(torch.randn(8, 16, dtype=D64, generator=g), dim=1)
    separated = centers[:, None, :] + 0.01 * torch.randn(8, 2, 16, dtype=D64, generator=g)
    mixed = torch.randn(8, 2, 16, dtype=D64, generator=g)
    sep_loss = groco_loss(separated, topk_neg=5, steepness=10.0)
    mix_loss = groco_loss(mixed, topk_neg=5, steepness=10.0)
    assert sep_loss < mix_loss
    # positives identical, negatives orthogonal: close to the hard-sorted optimum (0)
    eye = torch.eye(8, dtype=D64)
    assert groco_loss(torch.stack([eye, eye], 1), topk_neg=5, steepness=100.0) < 0.05


def test_negative_control_swapped_positive_changes_value_and_gradient() -> None:
    views = _views(6, 2, 4, seed=8)
    base = groco_loss(views, topk_neg=3)
    (g1,) = torch.autograd.grad(base, views)
    swapped = torch.stack([views[:, 0], views[[1, 0, 2, 3, 4, 5], 1]], dim=1)
    other = groco_loss(swapped, topk_neg=3)
    (g2,) = torch.autograd.grad(other, views)
    assert not torch.allclose(base, other)
    assert not torch.allclose(g1, g2)


def test_sorting_loss_on_scores_matches_multiview_form() -> None:
    views = _views(6, 2, 4, seed=9).detach()
    z = F.normalize(views, dim=-1)
    pos = (z[:, 0] * z[:, 1]).sum(-1, keepdim=True)
    sim = z[:, 0] @ z[:, 0].T
    neg = torch.stack([torch.cat((sim[i, :i], sim[i, i + 1 :])) for i in range(6)])
    got = groco_sorting_loss(pos, neg, topk_neg=3, reduction="none")
    want = groco_loss(views, topk_neg=3, anchor_views=(0,), reduction="none")
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(
        groco_sorting_loss(pos, neg), groco_sorting_loss(pos, neg, topk_neg=5)
    )


def test_module_bitonic_and_low_precision() -> None:
    views = _views(8, 2, 6, seed=10).detach()
    crit = GroCoLoss(topk_neg=4, steepness=2.0, network="bitonic", reduction="sum")
    torch.testing.assert_close(
        crit(views),
        groco_loss(views, topk_neg=4, steepness=2.0, network="bitonic", reduction="sum"),
    )
    assert not torch.allclose(
        crit(views), groco_loss(views, topk_neg=4, steepness=2.0, reduction="sum")
    )
    for dtype in (torch.float16, torch.bfloat16):
        got = groco_loss(views.to(dtype), topk_neg=4)
        assert got.dtype == torch.float32
        torch.testing.assert_close(
            got.double(), groco_loss(views, topk_neg=4), rtol=5e-2, atol=5e-2
        )
    sorter = SoftSortingNetwork("odd_even", steepness=5.0)
    torch.testing.assert_close(sorter(views[:, 0])[1], soft_sort(views[:, 0], steepness=5.0)[1])


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_value_error_naming_the_argument() -> None:
    views = _views(6, 2, 4).detach()
    with pytest.raises(ValueError, match="topk_neg"):
        groco_loss(views, topk_neg=6)
    with pytest.raises(ValueError, match="topk_neg"):
        groco_loss(views, topk_neg=0)
    with pytest.raises(ValueError, match="views"):
        groco_loss(views[:, 0])
    with pytest.raises(ValueError, match="views >= 2"):
        groco_loss(views[:, :1], topk_neg=2)
    with pytest.raises(ValueError, match="num_positive_views"):
        groco_loss(views, topk_neg=2, num_positive_views=3)
    with pytest.raises(ValueError, match="anchor_views"):
        groco_loss(views, topk_neg=2, anchor_views=(2,))
    with pytest.raises(ValueError, match="steepness"):
        groco_loss(views, topk_neg=2, steepness=0.0)
    with pytest.raises(ValueError, match="network"):
        groco_loss(views, topk_neg=2, network="bubble")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distribution"):
        groco_loss(views, topk_neg=2, distribution="optimal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        groco_loss(views, topk_neg=2, reduction="avg")  # type: ignore[arg-type]
    bad = views.clone()
    bad[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="views contains NaN"):
        groco_loss(bad, topk_neg=2)
    with pytest.raises(ValueError, match="one row per anchor"):
        groco_sorting_loss(torch.rand(3, 1), torch.rand(4, 5))
    with pytest.raises(ValueError, match="topk_neg"):
        groco_sorting_loss(torch.rand(3, 1), torch.rand(3, 5), topk_neg=6)
    with pytest.raises(ValueError, match="x must be"):
        soft_sort(torch.rand(3))
    with pytest.raises(ValueError, match="topk_neg"):
        GroCoLoss(topk_neg=0)
    with pytest.raises(ValueError, match="num_positive_views"):
        GroCoLoss(num_positive_views=1)
