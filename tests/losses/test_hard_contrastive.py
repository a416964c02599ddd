"""Wang & Liu's hard contrastive loss and HardSimple: loop references, tiling, closed forms."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses.hard_contrastive import (
    HardContrastiveLoss,
    hard_contrastive_loss,
    hard_simple_loss,
    hardest_negatives,
    num_hard_negatives,
)
from contrastkit.losses.info_nce import info_nce

D64 = torch.float64


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _value_and_grads(fn: Callable[..., Tensor], inputs: Sequence[Tensor]):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    total = out if out.ndim == 0 else (out * _randn(*out.shape, seed=99)).sum()
    grads = torch.autograd.grad(total, leaves)
    return out.detach(), [g.detach() for g in grads]


def _assert_same(fn_a, fn_b, inputs, rtol=1e-10, atol=1e-12) -> None:
    va, ga = _value_and_grads(fn_a, inputs)
    vb, gb = _value_and_grads(fn_b, inputs)
    torch.testing.assert_close(va, vb, rtol=rtol, atol=atol)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- loop references
def _hard_sets(a: Tensor, cands: Tensor, k: int) -> list[list[int]]:
    """For each anchor, the k candidate indices j != i of largest cosine (by Python sorting)."""
    za, zc = F.normalize(a, dim=-1), F.normalize(cands, dim=-1)
    sets = []
    for i in range(a.shape[0]):
        sims = [(float(za[i] @ zc[j]), j) for j in range(cands.shape[0]) if j != i]
        sims.sort(reverse=True)
        sets.append([j for _, j in sims[:k]])
    return sets


def ref_hard(a: Tensor, b: Tensor, negs: Tensor | None, tau: float, k: int) -> Tensor:
    cands = b if negs is None else torch.cat([b, negs])
    hard = _hard_sets(a.detach(), cands.detach(), k)
    losses = []
    for i in range(a.shape[0]):
        ai = a[i] / a[i].norm()
        pos = ai @ (b[i] / b[i].norm()) / tau
        terms = [pos] + [ai @ (cands[j] / cands[j].norm()) / tau for j in hard[i]]
        denom = torch.log(sum(torch.exp(t) for t in terms))
        losses.append(denom - pos)
    return torch.stack(losses)


def ref_hard_simple(a: Tensor, b: Tensor, negs: Tensor | None, lam: float, k: int) -> Tensor:
    cands = b if negs is None else torch.cat([b, negs])
    hard = _hard_sets(a.detach(), cands.detach(), k)
    losses = []
    for i in range(a.shape[0]):
        ai = a[i] / a[i].norm()
        neg = sum(ai @ (cands[j] / cands[j].norm()) for j in hard[i])
        losses.append(-(ai @ (b[i] / b[i].norm())) + lam * neg)
    return torch.stack(losses)


# ----------------------------------------------------------------------------- reference parity
@pytest.mark.parametrize("chunk_size", [None, 3, 1])
@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_matches_loop_reference(chunk_size: int | None, k: int, reduction: str) -> None:
    a, b = _randn(7, 5, seed=0), _randn(7, 5, seed=1)

    def ours(a: Tensor, b: Tensor) -> Tensor:
        return hard_contrastive_loss(
            a, b, temperature=0.3, num_hard=k, reduction=reduction, chunk_size=chunk_size
        )

    def ref(a: Tensor, b: Tensor) -> Tensor:
        per = ref_hard(a, b, None, 0.3, k)
        return per.mean() if reduction == "mean" else per

    _assert_same(ours, ref, [a, b])


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_memory_bank_negatives_match_loop_reference(chunk_size: int | None) -> None:
    a, b, bank = _randn(6, 4, seed=2), _randn(6, 4, seed=3), _randn(9, 4, seed=4)
    alpha = 0.25  # 14 negatives per anchor -> K = ceil(3.5) = 4
    assert num_hard_negatives(alpha, 14) == 4

    def ours(a: Tensor, b: Tensor, n: Tensor) -> Tensor:
        return hard_contrastive_loss(
            a, b, negatives=n, alpha=alpha, temperature=0.5, chunk_size=chunk_size
        )

    _assert_same(ours, lambda a, b, n: ref_hard(a, b, n, 0.5, 4).mean(), [a, b, bank])


def test_tiled_equals_dense_values_and_gradients() -> None:
    a, b = _randn(11, 6, seed=5), _randn(11, 6, seed=6)
    dense = lambda a, b: hard_contrastive_loss(a, b, num_hard=4, reduction="none")  # noqa: E731
    for chunk in (1, 2, 3, 5, 7, 11, 64):
        tiled = lambda a, b, c=chunk: hard_contrastive_loss(  # noqa: E731
            a, b, num_hard=4, reduction="none", chunk_size=c
        )
        _assert_same(dense, tiled, [a, b])


def test_blocked_topk_equals_dense_topk() -> None:
    q, c = _randn(13, 4, seed=7), _randn(20, 4, seed=8)
    dense = hardest_negatives(q, c, 5)
    for chunk in (1, 3, 6, 13):
        tiled = hardest_negatives(q, c, 5, chunk_size=chunk)
        assert torch.equal(dense.sort(1).values, tiled.sort(1).values)
    # the positive column i is never selected
    assert not bool((dense == torch.arange(13)[:, None]).any())


def test_alpha_one_is_info_nce() -> None:
    a, b = _randn(6, 5, seed=9), _randn(6, 5, seed=10)
    _assert_same(
        lambda a, b: hard_contrastive_loss(a, b, alpha=1.0, temperature=0.2, chunk_size=2),
        lambda a, b: info_nce(a, b, temperature=0.2),
        [a, b],
    )


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_closed_form_single_anchor() -> None:
    # anchor = positive = (1, 0); negatives at 30, 90 and 180 degrees: cosines .866, 0, -1.
    a = torch.tensor([_unit(0)], dtype=D64)
    b = torch.tensor([_unit(0)], dtype=D64)
    negs = torch.tensor([_unit(90), _unit(30), _unit(180)], dtype=D64)
    tau = 0.5
    c30 = math.cos(math.radians(30))
    for k, kept in ((1, [c30]), (2, [c30, 0.0]), (3, [c30, 0.0, -1.0])):
        expected = math.log(math.exp(1 / tau) + sum(math.exp(c / tau) for c in kept)) - 1 / tau
        got = hard_contrastive_loss(a, b, negatives=negs, num_hard=k, temperature=tau)
        assert float(got) == pytest.approx(expected, rel=1e-12)
        simple = hard_simple_loss(a, b, negatives=negs, num_hard=k, lam=0.5)
        assert float(simple) == pytest.approx(-1.0 + 0.5 * sum(kept), rel=1e-12, abs=1e-12)


def test_negative_control_only_hard_negatives_get_gradient() -> None:
    a = torch.tensor([_unit(0)], dtype=D64)
    b = torch.tensor([_unit(0)], dtype=D64)
    negs = torch.tensor([_unit(90), _unit(30), _unit(180)], dtype=D64, requires_grad=True)
    hard_contrastive_loss(a, b, negatives=negs, num_hard=1, temperature=0.5).backward()
    assert negs.grad is not None
    assert float(negs.grad[1].abs().sum()) > 1e-3  # the hard one
    assert float(negs.grad[[0, 2]].abs().sum()) == 0.0  # truncated
    # moving a non-hard negative leaves the loss unchanged; moving the hard one changes it
    base = hard_contrastive_loss(a, b, negatives=negs.detach(), num_hard=1)
    moved = negs.detach().clone()
    moved[2] = torch.tensor(_unit(170), dtype=D64)
    assert float(hard_contrastive_loss(a, b, negatives=moved, num_hard=1)) == float(base)
    moved[1] = torch.tensor(_unit(45), dtype=D64)
    assert abs(float(hard_contrastive_loss(a, b, negatives=moved, num_hard=1)) - float(base)) > 1e-3


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_hard_simple_matches_loop_reference(chunk_size: int | None) -> None:
    a, b, bank = _randn(5, 4, seed=11), _randn(5, 4, seed=12), _randn(3, 4, seed=13)
    _assert_same(
        lambda a, b, n: hard_simple_loss(
            a, b, negatives=n, num_hard=3, lam=0.7, reduction="none", chunk_size=chunk_size
        ),
        lambda a, b, n: ref_hard_simple(a, b, n, 0.7, 3),
        [a, b, bank],
    )


def test_module_matches_function_and_half_precision() -> None:
    a, b = _randn(8, 6, seed=14), _randn(8, 6, seed=15)
    module = HardContrastiveLoss(temperature=0.4, num_hard=3)
    assert torch.equal(module(a, b), hard_contrastive_loss(a, b, temperature=0.4, num_hard=3))
    half = hard_contrastive_loss(a.half(), b.half(), num_hard=3)
    assert half.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"num_hard": 0}, "num_hard"),
        ({"num_hard": 8}, "num_hard"),
        ({"temperature": 0.0}, "temperature"),
        ({"reduction": "avg"}, "reduction"),
    ],
)
def test_bad_hyper_parameters(kwargs: dict, match: str) -> None:
    a, b = _randn(8, 4, seed=0), _randn(8, 4, seed=1)
    with pytest.raises(ValueError, match=match):
        hard_contrastive_loss(a, b, **kwargs)


def test_bad_inputs() -> None:
    a, b = _randn(8, 4, seed=0), _randn(8, 4, seed=1)
    with pytest.raises(ValueError, match="a and b"):
        hard_contrastive_loss(a, b[:5])
    with pytest.raises(ValueError, match="a needs at least 2 rows"):
        hard_contrastive_loss(a[:1], b[:1])
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="a contains NaN"):
        hard_contrastive_loss(bad, b)
    with pytest.raises(ValueError, match="negatives"):
        hard_contrastive_loss(a, b, negatives=_randn(3, 5, seed=2))
    with pytest.raises(ValueError, match="lam"):
        hard_simple_loss(a, b, lam=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        HardContrastiveLoss(alpha=2.0)
