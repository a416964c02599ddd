"""MV-InfoNCE and MV-DHEL against float64 loop transcriptions of the reference formulas."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from contrastkit.losses.multi_view import MVDHELLoss, MVInfoNCELoss, mv_dhel, mv_info_nce
from contrastkit.losses.nt_xent import nt_xent

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
def _unit_views(views: Tensor) -> list[list[Tensor]]:
    """z[v][i]: L2-normalised view v of sample i."""
    b, v, _ = views.shape
    return [[views[i, w] / views[i, w].norm() for i in range(b)] for w in range(v)]


def ref_mv_info_nce(views: Tensor, tau: float) -> Tensor:
    """Reference MVINFONCE: per sample, 2·Σ_{v<w} e^{s} over Σ_v Σ_{k≠(v,i)} e^{s}."""
    z = _unit_views(views)
    num_views, b = len(z), len(z[0])
    rows = [(v, i) for v in range(num_views) for i in range(b)]
    losses = []
    for i in range(b):
        pos = 2 * sum(
            torch.exp(z[v][i] @ z[w][i] / tau)
            for v in range(num_views)
            for w in range(v + 1, num_views)
        )
        neg = sum(
            torch.exp(z[v][i] @ z[w][k] / tau)
            for v in range(num_views)
            for (w, k) in rows
            if (w, k) != (v, i)
        )
        losses.append(-torch.log(pos / neg))
    return torch.stack(losses)


def ref_mv_dhel(views: Tensor, tau: float) -> Tensor:
    """Reference MVDHEL: Σ_{v<w} e^{s} over Π_v Σ_{j≠i} e^{s(z_i^v, z_j^v)}."""
    z = _unit_views(views)
    num_views, b = len(z), len(z[0])
    losses = []
    for i in range(b):
        pos = sum(
            torch.exp(z[v][i] @ z[w][i] / tau)
            for v in range(num_views)
            for w in range(v + 1, num_views)
        )
        prod = views.new_ones(())
        for v in range(num_views):
            prod = prod * sum(torch.exp(z[v][i] @ z[v][j] / tau) for j in range(b) if j != i)
        losses.append(-torch.log(pos / prod))
    return torch.stack(losses)


# ----------------------------------------------------------------------------- parity
CASES = [(5, 2), (4, 3), (3, 4)]  # (B, V)


@pytest.mark.parametrize(("batch", "num_views"), CASES)
@pytest.mark.parametrize("chunk_size", [None, 3, 1])
@pytest.mark.parametrize(
    ("ours", "ref"), [(mv_info_nce, ref_mv_info_nce), (mv_dhel, ref_mv_dhel)], ids=["mvi", "dhel"]
)
def test_matches_loop_reference(batch, num_views, chunk_size, ours, ref) -> None:
    views = _randn(batch, num_views, 6, seed=batch * 10 + num_views)
    _assert_same(
        lambda v: ours(v, temperature=0.4, reduction="none", chunk_size=chunk_size),
        lambda v: ref(v, 0.4),
        [views],
    )
    _assert_same(
        lambda v: ours(v, temperature=0.4, chunk_size=chunk_size),
        lambda v: ref(v, 0.4).mean(),
        [views],
    )


@pytest.mark.parametrize("fn", [mv_info_nce, mv_dhel])
def test_tiled_equals_dense(fn) -> None:
    views = _randn(9, 3, 5, seed=3)
    for chunk in (1, 2, 4, 7, 27):
        _assert_same(
            lambda v: fn(v, reduction="none"),
            lambda v, c=chunk: fn(v, reduction="none", chunk_size=c),
            [views],
        )


def test_two_view_closed_forms() -> None:
    views = _randn(6, 2, 4, seed=4)
    tau = 0.3
    u = views[:, 0] / views[:, 0].norm(dim=1, keepdim=True)
    v = views[:, 1] / views[:, 1].norm(dim=1, keepdim=True)
    s_uv, s_uu, s_vv = u @ v.T / tau, u @ u.T / tau, v @ v.T / tau
    off = ~torch.eye(6, dtype=torch.bool)
    # DHEL: -s_ii + log Σ_{j≠i} e^{s(u_i,u_j)} + log Σ_{j≠i} e^{s(v_i,v_j)}
    lse_u = torch.logsumexp(s_uu.masked_fill(~off, -math.inf), 1)
    lse_v = torch.logsumexp(s_vv.masked_fill(~off, -math.inf), 1)
    dhel = -s_uv.diag() + lse_u + lse_v
    torch.testing.assert_close(mv_dhel(views, temperature=tau, reduction="none"), dhel)
    # MV-InfoNCE at V = 2: -log(2 e^{s_ii}) + log(D_u + D_v), D over the 2B - 1 other rows
    z = torch.cat([u, v])
    logits = (z @ z.T / tau).masked_fill(torch.eye(12, dtype=torch.bool), -math.inf)
    d = torch.logsumexp(logits, 1)
    expected = -(math.log(2) + s_uv.diag()) + torch.logaddexp(d[:6], d[6:])
    torch.testing.assert_close(mv_info_nce(views, temperature=tau, reduction="none"), expected)
    # ... which is not NT-Xent (negative control of the pooling convention)
    ntx = nt_xent(views[:, 0], views[:, 1], temperature=tau)
    assert abs(float(mv_info_nce(views, temperature=tau)) - float(ntx)) > 1e-3


def test_log_domain_is_stable_at_small_temperature() -> None:
    # The reference exponentiates directly: e^{1/0.005} overflows float32 (and float64 at 1e-3).
    views = _randn(6, 3, 8, seed=5)
    for fn in (mv_info_nce, mv_dhel):
        low = fn(views.float(), temperature=0.005)
        assert bool(torch.isfinite(low))
        torch.testing.assert_close(low.double(), fn(views, temperature=0.005), rtol=1e-4, atol=1e-3)
        assert bool(torch.isfinite(fn(views, temperature=1e-3)))


def test_negative_control_gradients_depend_on_views() -> None:
    views = _randn(5, 3, 4, seed=6)
    for fn in (mv_info_nce, mv_dhel):
        _, (g1,) = _value_and_grads(fn, [views])
        _, (g2,) = _value_and_grads(fn, [views + 0.3 * _randn(5, 3, 4, seed=7)])
        assert float((g1 - g2).abs().max()) > 1e-3


def test_modules_match_functions() -> None:
    views = _randn(5, 3, 4, seed=8)
    assert torch.equal(MVInfoNCELoss(temperature=0.2)(views), mv_info_nce(views, temperature=0.2))
    assert torch.equal(MVDHELLoss(temperature=0.2)(views), mv_dhel(views, temperature=0.2))
    assert mv_dhel(views.half()).dtype == torch.float32


@pytest.mark.parametrize("fn", [mv_info_nce, mv_dhel])
def test_bad_inputs(fn) -> None:
    with pytest.raises(ValueError, match="views must have shape"):
        fn(_randn(5, 4, seed=0))
    with pytest.raises(ValueError, match="views must have shape"):
        fn(_randn(5, 1, 4, seed=0))
    with pytest.raises(ValueError, match="views needs at least 2 rows"):
        fn(_randn(1, 3, 4, seed=0))
    with pytest.raises(ValueError, match="temperature"):
        fn(_randn(5, 2, 4, seed=0), temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        fn(_randn(5, 2, 4, seed=0), reduction="avg")
    bad = _randn(5, 2, 4, seed=0)
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="views contains NaN"):
        fn(bad)
    with pytest.raises(ValueError, match="views must be a floating"):
        fn(torch.ones(5, 2, 4, dtype=torch.long))
