"""MEOW / AdaMEOW weighted-negative InfoNCE against float64 loop transcriptions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from contrastkit.engine import pairwise_lse
from contrastkit.losses.info_nce import info_nce
from contrastkit.losses.weighted_negatives import (
    ClusterNegativeWeights,
    PairMLPWeights,
    WeightedInfoNCELoss,
    meow_loss,
    weighted_info_nce,
)

D64 = torch.float64


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _clusters(batch: int, sizes: Sequence[int], seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (batch,), generator=g) for k in sizes], dim=1)


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


def _mlp(dim: int, seed: int) -> PairMLPWeights:
    torch.manual_seed(seed)
    return PairMLPWeights(dim).double()


# ----------------------------------------------------------------------------- loop references
def ref_meow(a: Tensor, b: Tensor, assign: Tensor, tau: float) -> Tensor:
    """MEOW InfoNce: -log(dots_ii / (N · mean_j w_ij dots_ij)), w_ij = K - #same cluster."""
    n, k = assign.shape
    za = [a[i] / a[i].norm() for i in range(n)]
    zb = [b[i] / b[i].norm() for i in range(n)]
    losses = []
    for i in range(n):
        dots = [torch.exp(za[i] @ zb[j] / tau) for j in range(n)]
        weights = [k - int((assign[i] == assign[j]).sum()) for j in range(n)]
        denominator = n * (sum(w * d for w, d in zip(weights, dots, strict=True)) / n)
        losses.append(-torch.log(dots[i] / denominator))
    return torch.stack(losses)


def ref_adameow(a: Tensor, b: Tensor, mlp: PairMLPWeights, tau: float) -> Tensor:
    """AdaMEOW weight_InfoNce: w_ij = sigmoid(MLP(z_a,i + z_j)) on the summed pair input."""
    n = a.shape[0]
    za = [a[i] / a[i].norm() for i in range(n)]
    zb = [b[i] / b[i].norm() for i in range(n)]
    losses = []
    for i in range(n):
        denominator = a.new_zeros(())
        for j in range(n):
            w = torch.sigmoid(mlp.second(torch.tanh(mlp.first(za[i] + zb[j]))))[0]
            denominator = denominator + w * torch.exp(za[i] @ zb[j] / tau)
        losses.append(-torch.log(torch.exp(za[i] @ zb[i] / tau) / denominator))
    return torch.stack(losses)


# ----------------------------------------------------------------------------- MEOW
@pytest.mark.parametrize("chunk_size", [None, 3, 1])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_meow_matches_loop_reference(chunk_size: int | None, reduction: str) -> None:
    a, b = _randn(7, 5, seed=0), _randn(7, 5, seed=1)
    assign = _clusters(7, [2, 3, 4], seed=2)

    def ref(a: Tensor, b: Tensor) -> Tensor:
        per = ref_meow(a, b, assign, 0.5)
        return per.mean() if reduction == "mean" else per

    _assert_same(
        lambda a, b: meow_loss(
            a, b, assign, temperature=0.5, reduction=reduction, chunk_size=chunk_size
        ),
        ref,
        [a, b],
    )


def test_meow_tiled_equals_dense() -> None:
    a, b = _randn(10, 4, seed=3), _randn(10, 4, seed=4)
    assign = _clusters(10, [2, 5], seed=5)
    for chunk in (1, 2, 3, 4, 7, 10, 32):
        _assert_same(
            lambda a, b: meow_loss(a, b, assign, reduction="none"),
            lambda a, b, c=chunk: meow_loss(a, b, assign, reduction="none", chunk_size=c),
            [a, b],
        )


def test_meow_closed_forms() -> None:
    a, b = _randn(6, 4, seed=6), _randn(6, 4, seed=7)
    za = a / a.norm(dim=1, keepdim=True)
    zb = b / b.norm(dim=1, keepdim=True)
    logits = za @ zb.T / 0.5
    # Every sample alone in its cluster, K = 1: w = 1 off the diagonal, 0 on it (DCL-like).
    singletons = torch.arange(6)[:, None]
    off = logits.masked_fill(torch.eye(6, dtype=torch.bool), -math.inf)
    expected = torch.logsumexp(off, 1) - logits.diag()
    got = meow_loss(a, b, singletons, temperature=0.5, reduction="none")
    torch.testing.assert_close(got, expected)
    # K = 2 identical singleton clusterings: w = 2 off the diagonal -> + log 2.
    got2 = meow_loss(a, b, singletons.repeat(1, 2), temperature=0.5, reduction="none")
    torch.testing.assert_close(got2, expected + math.log(2))
    # Negative control: a shared cluster lowers that negative's weight and changes the loss.
    merged = singletons.clone()
    merged[1, 0] = 0
    assert float((meow_loss(a, b, merged, reduction="none") - got).abs()[[0, 1]].min()) > 1e-4


def test_cluster_rule_tiles_are_log_counts() -> None:
    assign = torch.tensor([[0, 0], [0, 1], [1, 1]])
    tile = ClusterNegativeWeights.from_assignments(assign).tile(slice(None), slice(None))
    expected = torch.tensor([[0, 1, 2], [1, 0, 1], [2, 1, 0]])
    assert tile.exclude is not None and tile.log_weight is not None
    assert torch.equal(tile.exclude, expected == 0)
    kept = expected > 0
    torch.testing.assert_close(tile.log_weight[kept], expected[kept].float().log())


def test_meow_anchor_without_weight_raises() -> None:
    a, b = _randn(4, 3, seed=8), _randn(4, 3, seed=9)
    everyone_together = torch.zeros(4, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="zero total weight"):
        meow_loss(a, b, everyone_together)


# ----------------------------------------------------------------------------- AdaMEOW
@pytest.mark.parametrize("chunk_size", [None, 3, 1])
def test_adameow_matches_loop_reference_including_mlp_gradients(chunk_size: int | None) -> None:
    a, b = _randn(6, 5, seed=10), _randn(6, 5, seed=11)
    mlp_ours, mlp_ref = _mlp(5, seed=0), _mlp(5, seed=0)
    params = list(mlp_ours.parameters())

    a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ours = weighted_info_nce(a1, b1, weight_fn=mlp_ours, temperature=0.6, chunk_size=chunk_size)
    g_ours = torch.autograd.grad(ours, [a1, b1, *params])
    a2, b2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ref = ref_adameow(a2, b2, mlp_ref, 0.6).mean()
    g_ref = torch.autograd.grad(ref, [a2, b2, *mlp_ref.parameters()])
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for x, y in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert all(float(g.abs().max()) > 0 for g in g_ours[2:])  # the MLP is trained


def test_learned_weights_tiled_equals_dense() -> None:
    a, b = _randn(9, 4, seed=12), _randn(9, 4, seed=13)
    mlp = _mlp(4, seed=1)
    params = list(mlp.parameters())

    def run(chunk: int | None) -> list[Tensor]:
        a1, b1 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        out = weighted_info_nce(a1, b1, weight_fn=mlp, reduction="none", chunk_size=chunk)
        total = (out * _randn(9, seed=5)).sum()
        return [out.detach(), *torch.autograd.grad(total, [a1, b1, *params])]

    dense = run(None)
    for chunk in (1, 2, 4, 5, 9):
        for x, y in zip(dense, run(chunk), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_learned_weights_combine_with_rule() -> None:
    # w_ij = cluster weight × learned weight.
    a, b = _randn(6, 3, seed=14), _randn(6, 3, seed=15)
    assign = _clusters(6, [2, 3], seed=16)
    rule = ClusterNegativeWeights.from_assignments(assign)
    mlp = _mlp(3, seed=2)
    za = a / a.norm(dim=1, keepdim=True)
    zb = b / b.norm(dim=1, keepdim=True)
    w = mlp(za, zb) * (2 - (assign[:, None, :] == assign[None, :, :]).sum(-1))
    logits = za @ zb.T / 0.5
    expected = torch.log((w * logits.exp()).sum(1)) - logits.diag()
    for chunk in (None, 4):
        got = weighted_info_nce(
            a,
            b,
            negative_weights=rule,
            weight_fn=mlp,
            temperature=0.5,
            reduction="none",
            chunk_size=chunk,
        )
        torch.testing.assert_close(got, expected)


def test_unit_weights_are_info_nce() -> None:
    a, b = _randn(6, 4, seed=17), _randn(6, 4, seed=18)

    def ones(rows: Tensor, cols: Tensor) -> Tensor:
        return rows.new_ones(rows.shape[0], cols.shape[0])

    _assert_same(
        lambda a, b: weighted_info_nce(a, b, weight_fn=ones, temperature=0.2, chunk_size=4),
        lambda a, b: info_nce(a, b, temperature=0.2),
        [a, b],
    )
    _assert_same(
        lambda a, b: weighted_info_nce(a, b, temperature=0.2),
        lambda a, b: info_nce(a, b, temperature=0.2),
        [a, b],
    )


def test_pair_mlp_factorisation_matches_pairwise_sum() -> None:
    mlp = _mlp(5, seed=3)
    rows, cols = _randn(3, 5, seed=19), _randn(4, 5, seed=20)
    direct = torch.sigmoid(mlp.second(torch.tanh(mlp.first(rows[:, None] + cols[None])))).squeeze(
        -1
    )
    torch.testing.assert_close(mlp(rows, cols), direct)


def test_module_registers_weight_network_and_matches_function() -> None:
    mlp = _mlp(4, seed=4)
    module = WeightedInfoNCELoss(weight_fn=mlp, temperature=0.7)
    assert len(list(module.parameters())) == 4
    a, b = _randn(5, 4, seed=21), _randn(5, 4, seed=22)
    torch.testing.assert_close(
        module(a, b), weighted_info_nce(a, b, weight_fn=mlp, temperature=0.7), rtol=0, atol=0
    )
    assign = _clusters(5, [2, 3], seed=23)
    rule = ClusterNegativeWeights.from_assignments(assign)
    plain = WeightedInfoNCELoss(temperature=0.7)
    torch.testing.assert_close(plain(a, b, rule), meow_loss(a, b, assign, temperature=0.7))


def test_engine_pair_rule_with_log_weight_sanity() -> None:
    # The engine's contract for log_weight: Σ_j exp(log w_ij) exp(s_ij), dense == tiled.
    q, c = _randn(5, 3, seed=24), _randn(5, 3, seed=25)
    rule = ClusterNegativeWeights.from_assignments(_clusters(5, [2, 2], seed=26))
    dense = pairwise_lse(q, c, rule).rows
    tiled = pairwise_lse(q, c, rule, chunk_size=2).rows
    assert dense is not None and tiled is not None
    torch.testing.assert_close(dense.lse, tiled.lse)


def test_bad_inputs() -> None:
    a, b = _randn(5, 4, seed=0), _randn(5, 4, seed=1)
    with pytest.raises(ValueError, match="assignments must be integer cluster ids"):
        meow_loss(a, b, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="assignments must be an integer tensor of shape"):
        meow_loss(a, b, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"assignments must have shape \(5, K >= 1\)"):
        meow_loss(a, b, torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="same number of clusterings"):
        ClusterNegativeWeights(
            torch.zeros(5, 2, dtype=torch.long), torch.zeros(5, 3, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="weight_fn must return non-negative"):
        weighted_info_nce(a, b, weight_fn=lambda r, c: -torch.ones(r.shape[0], c.shape[0]))
    with pytest.raises(ValueError, match="weight_fn must return shape"):
        weighted_info_nce(a, b, weight_fn=lambda r, c: torch.ones(r.shape[0]))
    with pytest.raises(ValueError, match="a and b"):
        weighted_info_nce(a, b[:3])
    with pytest.raises(ValueError, match="temperature"):
        weighted_info_nce(a, b, temperature=-1.0)
    with pytest.raises(ValueError, match="dim must be"):
        PairMLPWeights(0)
