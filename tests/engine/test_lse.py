"""The similarity engine: tiled == dense == float64 loop reference, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import contrastkit.engine.lse as lse_module
from contrastkit.engine import Pairs, SideStats, pairwise_lse, safe_logaddexp, safe_logsumexp


def _reference(a, c, row_ids=None, col_ids=None, weight_fn=None):
    """Loops over every (anchor, candidate) pair, written from the definitions."""
    n, m = a.shape[0], c.shape[0]
    row_lse, col_lse, row_ws, col_ws, row_wt, col_wt = [], [], [], [], [], []
    s = [[sum(a[i, k] * c[j, k] for k in range(a.shape[1])) for j in range(m)] for i in range(n)]

    def counted(i, j):
        return row_ids is None or int(row_ids[i]) != int(col_ids[j])

    def w(i, j):
        return 0.0 if (weight_fn is None or not counted(i, j)) else weight_fn(i, j)

    for i in range(n):
        terms = [torch.exp(s[i][j]) for j in range(m) if counted(i, j)]
        row_lse.append(torch.log(sum(terms)) if terms else torch.tensor(-math.inf, dtype=a.dtype))
        row_ws.append(sum(w(i, j) * s[i][j] for j in range(m)))
        row_wt.append(sum(w(i, j) for j in range(m)))
    for j in range(m):
        terms = [torch.exp(s[i][j]) for i in range(n) if counted(i, j)]
        col_lse.append(torch.log(sum(terms)) if terms else torch.tensor(-math.inf, dtype=a.dtype))
        col_ws.append(sum(w(i, j) * s[i][j] for i in range(n)))
        col_wt.append(sum(w(i, j) for i in range(n)))
    as_t = lambda xs: torch.stack([torch.as_tensor(x, dtype=a.dtype) for x in xs])  # noqa: E731
    return [as_t(x) for x in (row_lse, row_ws, row_wt, col_lse, col_ws, col_wt)]


def _scalar(res, weights_on):
    """A loss-like scalar touching every output, with distinct coefficients per entry."""
    total = 0
    for k, side in enumerate((res.rows, res.columns)):
        coef = torch.linspace(0.5, 1.5, side.lse.numel(), dtype=side.lse.dtype) * (k + 1)
        total = total + (torch.where(torch.isfinite(side.lse), side.lse, 0) * coef).sum()
        if weights_on:
            total = total - 0.7 * (side.weighted_sum * coef.flip(0)).sum()
    return total


CASES = [
    # n, m, d, chunk
    (7, 5, 3, 2),  # uneven last tile, n != m
    (6, 6, 4, 1),  # tile of 1
    (5, 9, 2, 4),
    (8, 8, 3, 100),  # one tile larger than the matrix
]


@pytest.mark.parametrize("n,m,d,chunk", CASES)
@pytest.mark.parametrize("mode", ["plain", "ids", "labels", "keys"])
def test_tiled_equals_dense_equals_reference(n, m, d, chunk, mode):
    g = torch.Generator().manual_seed(n * 100 + m * 10 + d)
    a = torch.randn(n, d, dtype=torch.float64, generator=g)
    c = torch.randn(m, d, dtype=torch.float64, generator=g)
    row_ids = torch.randint(0, 3, (n,), generator=g)
    col_ids = torch.randint(0, 3, (m,), generator=g)
    labels_r = torch.randint(0, 2, (n,), generator=g)
    labels_c = torch.randint(0, 2, (m,), generator=g)
    keys_r = torch.nn.functional.normalize(torch.randn(n, 4, dtype=torch.float64, generator=g))
    keys_c = torch.nn.functional.normalize(torch.randn(m, 4, dtype=torch.float64, generator=g))
    pairs, ref_kwargs = None, {}
    if mode == "ids":
        pairs = Pairs(row_ids=row_ids, col_ids=col_ids)
        ref_kwargs = dict(row_ids=row_ids, col_ids=col_ids)
    elif mode == "labels":
        pairs = Pairs(row_ids=row_ids, col_ids=col_ids, row_labels=labels_r, col_labels=labels_c)
        ref_kwargs = dict(
            row_ids=row_ids,
            col_ids=col_ids,
            weight_fn=lambda i, j: float(labels_r[i] == labels_c[j]),
        )
    elif mode == "keys":
        pairs = Pairs(row_keys=keys_r, col_keys=keys_c)
        ref_kwargs = dict(weight_fn=lambda i, j: (float(keys_r[i] @ keys_c[j]) + 1) / 2)
    weights_on = mode in ("labels", "keys")

    ref = _reference(a, c, **ref_kwargs)
    results = {}
    paths = {
        "dense": (None, None),
        "dense-recomputed": (None, 0),
        "tiled": (chunk, None),
        "tiled-recomputed": (chunk, 0),
    }
    for path, (chunk_size, budget) in paths.items():
        aa, cc = a.clone().requires_grad_(), c.clone().requires_grad_()
        res = pairwise_lse(
            aa, cc, pairs, rows=True, columns=True, chunk_size=chunk_size, memory_budget=budget
        )
        got = [res.rows.lse, res.columns.lse]
        torch.testing.assert_close(got[0], ref[0])
        torch.testing.assert_close(got[1], ref[3])
        if weights_on:
            torch.testing.assert_close(res.rows.weighted_sum, ref[1])
            torch.testing.assert_close(res.rows.weight_total, ref[2])
            torch.testing.assert_close(res.columns.weighted_sum, ref[4])
            torch.testing.assert_close(res.columns.weight_total, ref[5])
        _scalar(res, weights_on).backward()
        assert torch.isfinite(aa.grad).all() and torch.isfinite(cc.grad).all()
        results[path] = (aa.grad, cc.grad)

    # Reference gradient: autograd through the float64 loop reference.
    aa, cc = a.clone().requires_grad_(), c.clone().requires_grad_()
    r = _reference(aa, cc, **ref_kwargs)
    ref_res = type("R", (), {})()
    ref_res.rows = SideStats(r[0], r[1], r[2])
    ref_res.columns = SideStats(r[3], r[4], r[5])
    _scalar(ref_res, weights_on).backward()
    for path in paths:
        torch.testing.assert_close(results[path][0], aa.grad, msg=f"{path} grad anchors")
        torch.testing.assert_close(results[path][1], cc.grad, msg=f"{path} grad candidates")


@pytest.mark.parametrize("rows,columns", [(True, False), (False, True)])
def test_one_side_only_matches(rows, columns):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(9, 4, dtype=torch.float64, generator=g, requires_grad=True)
    c = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    grads = []
    for chunk in (None, 4):
        res = pairwise_lse(a, c, rows=rows, columns=columns, chunk_size=chunk)
        side = res.rows if rows else res.columns
        assert (res.columns if rows else res.rows) is None
        (side.lse * torch.arange(side.lse.numel())).sum().backward()
        grads.append((a.grad.clone(), c.grad.clone()))
        a.grad = c.grad = None
    torch.testing.assert_close(grads[0], grads[1])


def test_fully_excluded_rows_give_minus_inf_and_zero_gradient():
    a = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    # anchor 0 shares its id with every candidate: nothing is counted for it.
    pairs = Pairs(row_ids=torch.tensor([5, 1, 2]), col_ids=torch.tensor([5, 5, 5, 5]))
    for chunk in (None, 2):
        res = pairwise_lse(a, c, pairs, rows=True, chunk_size=chunk)
        assert res.rows.lse[0] == -math.inf
        merged = safe_logaddexp(res.rows.lse, torch.zeros(3, dtype=torch.float64))
        merged.sum().backward()
        assert torch.isfinite(a.grad).all() and a.grad[0].abs().sum() == 0
        a.grad = c.grad = None


def test_blocks_merge_to_the_whole():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5, 3, dtype=torch.float64, generator=g)
    c = torch.randn(8, 3, dtype=torch.float64, generator=g)
    labels_r, labels_c = torch.tensor([0, 1, 0, 1, 2]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    whole = pairwise_lse(a, c, Pairs(row_labels=labels_r, col_labels=labels_c)).rows
    first = pairwise_lse(a, c[:3], Pairs(row_labels=labels_r, col_labels=labels_c[:3])).rows
    second = pairwise_lse(a, c[3:], Pairs(row_labels=labels_r, col_labels=labels_c[3:])).rows
    merged = first.merge(second)
    torch.testing.assert_close(merged.lse, whole.lse)
    torch.testing.assert_close(merged.weighted_sum, whole.weighted_sum)
    torch.testing.assert_close(merged.weight_total, whole.weight_total)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_fp32(dtype):
    g = torch.Generator().manual_seed(2)
    a = torch.nn.functional.normalize(torch.randn(300, 16, generator=g)) / 0.01
    c = torch.nn.functional.normalize(torch.randn(200, 16, generator=g))
    ref = pairwise_lse(a.double(), c.double(), rows=True, columns=True)
    for chunk in (None, 64):
        res = pairwise_lse(a.to(dtype), c.to(dtype), rows=True, columns=True, chunk_size=chunk)
        assert res.rows.lse.dtype == torch.float32
        # Only the input rounding differs: |Δs| ≤ 2·eps(dtype)·|s| with |s| ≤ 100.
        tol = 100 * 4 * torch.finfo(dtype).eps
        torch.testing.assert_close(res.rows.lse.double(), ref.rows.lse, atol=tol, rtol=0)
        torch.testing.assert_close(res.columns.lse.double(), ref.columns.lse, atol=tol, rtol=0)


@pytest.mark.parametrize("temperature", [0.01, 0.05])
def test_stable_at_small_temperature(temperature):
    """Logit scale 100: logits up to ±100, exp overflows fp32 without the running max."""
    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.normalize(torch.randn(257, 8, generator=g))
    c = torch.nn.functional.normalize(torch.randn(300, 8, generator=g))
    a[0] = c[0]  # one logit exactly 1/τ
    ref = torch.logsumexp((a.double() @ c.double().T) / temperature, 1)
    a32 = (a / temperature).requires_grad_()
    for chunk in (None, 50):
        res = pairwise_lse(a32, c, chunk_size=chunk)
        torch.testing.assert_close(res.rows.lse.double(), ref, rtol=1e-6, atol=1e-5)
        res.rows.lse.sum().backward()
        assert torch.isfinite(a32.grad).all()
        a32.grad = None


def test_safe_helpers_match_torch_on_finite_input():
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(safe_logsumexp(x, 1), torch.logsumexp(x, 1))
    torch.testing.assert_close(safe_logaddexp(x[0], x[1]), torch.logaddexp(x[0], x[1]))


def test_bad_arguments_raise():
    a, c = torch.randn(3, 2), torch.randn(4, 3)
    with pytest.raises(ValueError, match="share d"):
        pairwise_lse(a, c)
    with pytest.raises(ValueError, match="chunk_size"):
        pairwise_lse(a, torch.randn(4, 2), chunk_size=0)
    with pytest.raises(ValueError, match="rows=True"):
        pairwise_lse(a, torch.randn(4, 2), rows=False, columns=False)
    with pytest.raises(ValueError, match="row_ids and col_ids"):
        Pairs(row_ids=torch.arange(3))


def test_negative_control_different_candidates_give_different_gradient():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    c1 = torch.randn(7, 3, dtype=torch.float64, generator=g)
    c2 = c1.clone()
    c2[3] += 0.5
    grads = []
    for c in (c1, c2):
        pairwise_lse(a, c, chunk_size=2).rows.lse.sum().backward()
        grads.append(a.grad.clone())
        a.grad = None
    assert not torch.allclose(grads[0], grads[1])


def test_pair_weights_with_gradient_are_refused_on_both_paths():
    keys = torch.randn(4, 3, requires_grad=True)
    pairs = Pairs(row_keys=keys, col_keys=keys)
    for chunk in (None, 2):
        with pytest.raises(ValueError, match="must not require grad"):
            pairwise_lse(torch.randn(4, 2), torch.randn(4, 2), pairs, chunk_size=chunk)
    # detached keys are fine
    pairs = Pairs(row_keys=keys.detach(), col_keys=keys.detach())
    assert pairwise_lse(torch.randn(4, 2), torch.randn(4, 2), pairs).rows is not None


@pytest.mark.parametrize("chunk", [None, 2])
def test_backward_twice_with_retained_graph_gives_the_same_gradient(chunk):
    a = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    res = pairwise_lse(a, c, rows=True, columns=True, chunk_size=chunk)
    loss = res.rows.lse.sum() + 2 * res.columns.lse.sum()
    loss.backward(retain_graph=True)
    first = a.grad.clone()
    a.grad = None
    loss.backward()
    torch.testing.assert_close(a.grad, first)


def test_default_tile_is_larger_on_accelerators() -> None:
    from contrastkit.engine import ACCELERATOR_TILE, DEFAULT_TILE, default_tile

    assert default_tile(torch.device("cpu")) == DEFAULT_TILE
    assert default_tile(torch.device("cuda", 0)) == ACCELERATOR_TILE > DEFAULT_TILE
    # the automatic tiled path uses it: above DENSE_MAX_PAIRS, chunk_size=None equals the tile
    a, c = torch.randn(2100, 4, dtype=torch.float64), torch.randn(2100, 4, dtype=torch.float64)
    auto = pairwise_lse(a, c).rows
    explicit = pairwise_lse(a, c, chunk_size=DEFAULT_TILE).rows
    assert auto is not None and explicit is not None
    torch.testing.assert_close(auto.lse, explicit.lse, rtol=0, atol=0)


def _kept_numel(side_lse):
    """Entries of S that the engine kept for backward (its 5th saved tensor)."""
    return side_lse.grad_fn.saved_tensors[4].numel()


@pytest.mark.parametrize("mode", ["plain", "ids", "labels"])
@pytest.mark.parametrize("rows,columns", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("chunk", [None, 16])
@pytest.mark.parametrize("wide_rows", [None, 10], ids=["wide-default", "wide-10"])
def test_kept_and_recomputed_logits_give_the_same_values_and_gradients(
    mode, rows, columns, chunk, wide_rows, monkeypatch
):
    if wide_rows is not None:  # several wide blocks (rows-only kept path) at this small size
        monkeypatch.setattr(lse_module, "WIDE_ROWS", wide_rows)
    g = torch.Generator().manual_seed(11)
    n, m, d = 45, 38, 6
    a0 = torch.randn(n, d, dtype=torch.float64, generator=g)
    c0 = torch.randn(m, d, dtype=torch.float64, generator=g)
    pairs = None
    if mode != "plain":
        ids_r = torch.randint(0, 9, (n,), generator=g)
        ids_c = torch.randint(0, 9, (m,), generator=g)
        labels = {}
        if mode == "labels":
            labels = dict(
                row_labels=torch.randint(0, 3, (n,), generator=g),
                col_labels=torch.randint(0, 3, (m,), generator=g),
            )
        pairs = Pairs(row_ids=ids_r, col_ids=ids_c, **labels)
    outs = {}
    for budget in (None, 0):
        a, c = a0.clone().requires_grad_(), c0.clone().requires_grad_()
        res = pairwise_lse(
            a, c, pairs, rows=rows, columns=columns, chunk_size=chunk, memory_budget=budget
        )
        sides = [s for s in (res.rows, res.columns) if s is not None]
        if chunk is not None or budget == 0:  # (chunk None, budget None: plain autograd)
            assert _kept_numel(sides[0].lse) == (n * m if budget is None else 0)
        loss = sum(
            (torch.where(torch.isfinite(s.lse), s.lse, 0) * torch.linspace(0.5, 2, s.lse.numel()))
            .to(torch.float64)
            .sum()
            for s in sides
        )
        if mode == "labels":
            loss = loss - 0.3 * sum(s.weighted_sum.sum() for s in sides)
        loss.backward()
        outs[budget] = ([s.lse for s in sides], a.grad, c.grad)
    for kept, recomputed in zip(outs[None][0], outs[0][0], strict=True):
        torch.testing.assert_close(kept, recomputed)
    torch.testing.assert_close(outs[None][1], outs[0][1])
    torch.testing.assert_close(outs[None][2], outs[0][2])
    assert outs[None][1].abs().sum() > 0  # not a vacuous comparison


class _MatmulFlops(TorchDispatchMode):
    """Counts the FLOPs of every matrix product (any overload: out=, in-place addmm_)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm", "addmm_"):
            x, y = (args[0], args[1]) if name == "mm" else (args[1], args[2])
            self.flops += 2 * x.shape[0] * x.shape[1] * y.shape[1]
        return func(*args, **(kwargs or {}))


def test_kept_logits_cost_three_matrix_products_recomputed_four():
    n, m, d = 300, 200, 32
    flops = {}
    for budget in (None, 0):
        a, c = torch.randn(n, d, requires_grad=True), torch.randn(m, d, requires_grad=True)
        with _MatmulFlops() as counter:
            res = pairwise_lse(a, c, rows=True, columns=True, chunk_size=64, memory_budget=budget)
            (res.rows.lse.sum() + res.columns.lse.sum()).backward()
        flops[budget] = counter.flops
    assert flops[None] == 3 * 2 * n * m * d
    assert flops[0] == 4 * 2 * n * m * d


def test_logits_are_kept_only_when_they_fit_and_a_gradient_is_needed():
    a, c = torch.randn(64, 4, requires_grad=True), torch.randn(32, 4, requires_grad=True)
    size = 64 * 32 * 4  # float32 bytes of S
    for chunk in (8, 40):
        kept = pairwise_lse(a, c, chunk_size=chunk, memory_budget=size).rows.lse
        assert _kept_numel(kept) == 64 * 32
        recomputed = pairwise_lse(a, c, chunk_size=chunk, memory_budget=size - 1).rows.lse
        assert _kept_numel(recomputed) == 0
        with torch.no_grad():
            assert pairwise_lse(a, c, chunk_size=chunk).rows.lse.grad_fn is None
    for bad in (-1, 1.5, True, "1GiB"):
        with pytest.raises(ValueError, match="memory_budget"):
            pairwise_lse(a, c, memory_budget=bad)


def test_kept_logits_are_freed_after_backward_while_the_loss_lives():
    import gc
    import weakref

    a, c = torch.randn(50, 4, requires_grad=True), torch.randn(40, 4, requires_grad=True)
    res = pairwise_lse(a, c, rows=True, columns=True, chunk_size=16)
    kept = weakref.ref(res.rows.lse.grad_fn.saved_tensors[4])
    gc.collect()
    assert kept() is not None
    loss = res.rows.lse.sum() + res.columns.lse.sum()
    loss.backward()
    gc.collect()
    assert kept() is None  # the caller still holds `loss` and `res`, not the n x m logits


def test_small_dense_problems_use_plain_autograd_and_match_the_function():
    from contrastkit.engine.lse import AUTOGRAD_MAX_PAIRS

    g = torch.Generator().manual_seed(5)
    n = int(AUTOGRAD_MAX_PAIRS**0.5)
    a0 = torch.randn(n, 8, dtype=torch.float64, generator=g)
    ids = torch.randint(0, n // 4, (n,), generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    pairs = Pairs(row_ids=ids, col_ids=ids, row_labels=labels, col_labels=labels)
    outs = []
    for budget in (None, 0):  # autograd (S kept by autograd) / the Function, recomputing S
        a = a0.clone().requires_grad_()
        res = pairwise_lse(a, a.flip(0), pairs, rows=True, columns=True, memory_budget=budget)
        name = type(res.rows.lse.grad_fn).__name__
        assert ("TiledLSE" in name) == (budget == 0), name
        loss = res.rows.lse.sum() + 0.5 * res.columns.lse.sum() - res.rows.weighted_sum.sum()
        loss.backward()
        outs.append((res.rows.lse, res.columns.lse, res.columns.weight_total, a.grad))
    for x, y in zip(*outs, strict=True):
        torch.testing.assert_close(x, y)
