"""Exact row/column log-sum-exp of ``S = A Cᵀ`` under pair masks, dense or tiled.

The softmax-family objectives (InfoNCE, NT-Xent, CLIP, DCL, SupCon, CWCL, ...) all reduce to, per
anchor ``i`` (row) and optionally per candidate ``j`` (column):

* ``lse_i = log Σ_{j counted} exp(S_ij)``   — the softmax denominator, and
* ``Σ_j w_ij S_ij`` and ``Σ_j w_ij``          — weighted logits of the positives.

The temperature is applied by the caller, who passes ``A = anchors / τ``: the gradient w.r.t. a
learnable τ then flows through that ``O(n·d)`` product with ordinary autograd.

Two paths compute the same numbers:

* **dense** materialises ``S`` (``n × m``) as a single tile; fastest for small ``n·m``.
* **tiled** walks blocks of ``S`` with an online log-sum-exp (running max and rescaled sum).

Independently of the path, ``memory_budget`` decides what backward gets:

* **kept** (``n·m`` logits fit in the budget and a gradient is needed): the forward writes ``S``
  (masked) into one ``n × m`` buffer, in blocks of full rows, and keeps it; backward builds
  ``∂L/∂S`` from it block by block and costs **2** matrix products (3 in all, the roofline).
  A rule with pair weights (CWCL's key kernel, SupCon's labels) keeps its weights too (twice
  the memory), so backward does not evaluate the rule again (for CWCL: one product of keys and
  an exp pass per block).
* **recomputed** (otherwise): nothing of size ``n·m`` outlives the forward; backward recomputes
  each ``tile × tile`` block (4 products in all). With ``P = exp(S - lse)``,

      ∂L/∂S_ij = g_i · P^row_ij + g_j · P^col_ij + (h_i + h_j) · w_ij   (counted pairs)
      ∂L/∂A = (∂L/∂S) C,   ∂L/∂C = (∂L/∂S)ᵀ A,

  which holds because ``∂lse_i/∂S_ij`` is the row softmax and the weighted sums are linear in
  ``S``. Extra memory is ``O((n + m)·d + tile²)``, never ``O(n·m)``.

Both use the same formula for ``∂L/∂S``; only where ``S`` comes from differs. Tile buffers are
allocated once per call and reused (no ``tile²`` allocation per block).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contrastkit._checks import check_chunk_size, check_memory_budget
from contrastkit.engine.pairs import PairRule, TilePairs, apply_tile

#: Above this many pairs the automatic choice is the tiled path.
DENSE_MAX_PAIRS = 2048 * 2048
#: Up to this many pairs (and when ``S`` is kept) the dense path is plain autograd: at small
#: sizes the custom autograd Function's fixed cost exceeds the work (measured on 2 CPU cores:
#: rows and columns of B = 64, d = 128, forward + backward 163 µs with autograd, 252 µs with the
#: Function; B = 256: 1.31 ms vs 1.50 ms; from B = 512 on the Function is as fast or faster).
AUTOGRAD_MAX_PAIRS = 256 * 256
#: Fewest rows per block of a kept, rows-only, unweighted ``S`` (see :func:`block_shape`).
#: Measured on one CPU thread, InfoNCE forward + backward at d = 128: B = 8192, 1047 ms with
#: 128-row blocks, 895 ms with 1024; B = 16384, 4508 ms with 64-row blocks, 3689 ms with 1024;
#: B = 4096 equal.
WIDE_ROWS = 1024
#: Default tile edge of the tiled path on CPU (a 1024 × 1024 fp32 tile is 4 MiB).
DEFAULT_TILE = 1024
#: Default tile edge on GPUs (64 MiB in fp32): 1024-tiles leave a GPU launch-bound. Measured on
#: an H200, clip_loss B=65536, d=512, fp32: 2.2 s with 1024-tiles, 0.55 s with 4096-tiles (dense
#: PyTorch: 0.41 s and 81 GiB).
ACCELERATOR_TILE = 4096
#: Default ``memory_budget`` of :func:`pairwise_lse`: 1 GiB of kept logits, i.e. ``n·m ≤ 2²⁸``
#: in float32 (``B = 16384`` for a square ``S``). Keeping ``S`` saves one of four matrix products.
DEFAULT_MEMORY_BUDGET = 2**30


def default_tile(device: torch.device) -> int:
    """The tiled path's default tile edge on ``device``."""
    return DEFAULT_TILE if device.type == "cpu" else ACCELERATOR_TILE


_NEG_INF = float("-inf")


@dataclass(frozen=True)
class SideStats:
    """Per-anchor (or per-candidate) statistics; mergeable across candidate blocks.

    Attributes:
        lse: ``(k,)`` log Σ exp of the counted logits; ``-inf`` where nothing was counted.
        weighted_sum: ``(k,)`` Σ w_ij S_ij, or None when the pairs carry no weights.
        weight_total: ``(k,)`` Σ w_ij (no gradient), or None.
    """

    lse: Tensor
    weighted_sum: Tensor | None = None
    weight_total: Tensor | None = None

    def merge(self, other: SideStats) -> SideStats:
        """Combine statistics of the same anchors over two disjoint candidate blocks.

        This is how blocks that arrive one at a time (other ranks, a memory queue, extra
        negatives) join: log-sum-exps add in the exp domain, weighted sums add.
        """
        return SideStats(
            lse=safe_logaddexp(self.lse, other.lse),
            weighted_sum=_add_optional(self.weighted_sum, other.weighted_sum),
            weight_total=_add_optional(self.weight_total, other.weight_total),
        )


@dataclass(frozen=True)
class LSEResult:
    """Output of :func:`pairwise_lse`: row statistics and/or column statistics."""

    rows: SideStats | None
    columns: SideStats | None


def pairwise_lse(
    anchors: Tensor,
    candidates: Tensor,
    pairs: PairRule | None = None,
    *,
    rows: bool = True,
    columns: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> LSEResult:
    """Row- and/or column-wise log-sum-exp of ``S = anchors @ candidates.T`` under ``pairs``.

    Args:
        anchors: ``(n, d)``, already divided by the temperature.
        candidates: ``(m, d)``.
        pairs: which pairs are excluded and how positives are weighted (see
            :class:`contrastkit.engine.Pairs`); None counts every pair with no weights.
        rows: compute per-anchor statistics (softmax over candidates).
        columns: compute per-candidate statistics (softmax over anchors), from the same ``S``.
        chunk_size: None chooses the dense path for small ``n·m`` and the tiled path otherwise;
            an integer forces the tiled path with that tile edge.
        memory_budget: bytes that the ``n × m`` logits may occupy between forward and backward
            (None: :data:`DEFAULT_MEMORY_BUDGET`, 1 GiB). When a gradient is needed and
            ``n·m·itemsize`` fits (twice that for a rule with pair weights, which are kept
            too), the forward keeps ``S`` and backward costs 2 matrix products instead of 3
            (recomputing ``S``); otherwise extra memory stays ``O((n + m)·d +
            tile²)``. 0 never keeps ``S``. Values and gradients agree either way (to rounding).

    Returns:
        :class:`LSEResult`. fp16/bf16 inputs are computed and returned in fp32.

    Raises:
        ValueError: if neither ``rows`` nor ``columns`` is requested, shapes disagree, or
            ``chunk_size`` is not a positive integer, or ``memory_budget`` is not an integer
            ≥ 0.
    """
    if not (rows or columns):
        raise ValueError("pairwise_lse: request rows=True and/or columns=True")
    if anchors.ndim != 2 or candidates.ndim != 2 or anchors.shape[1] != candidates.shape[1]:
        raise ValueError(
            "pairwise_lse: anchors (n, d) and candidates (m, d) must share d, got "
            f"{tuple(anchors.shape)} and {tuple(candidates.shape)}"
        )
    check_chunk_size(chunk_size)
    check_memory_budget(memory_budget)
    if pairs is not None and torch.is_grad_enabled():
        probe = pairs.tile(slice(0, 1), slice(0, 1))
        if any(x is not None and x.requires_grad for x in (probe.weight, probe.log_weight)):
            raise ValueError(
                "pairs: weights and log-weights must not require grad — the tiled backward "
                "treats them as constants; detach them (or compute learned weights outside "
                "the engine)"
            )
    a, c = _accumulation_dtype(anchors), _accumulation_dtype(candidates)
    n, m = a.shape[0], c.shape[0]
    dense = chunk_size is None and n * m <= DENSE_MAX_PAIRS
    tile = max(n, m) if dense else (chunk_size or default_tile(a.device))
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or c.requires_grad)
    weighted = pairs is not None and pairs.has_weights
    # kept: the logits, and the pair weights when the rule has any (not recomputed in backward)
    keep = keeps_logits(n, m, a, needs_grad, memory_budget, copies=2 if weighted else 1)
    if dense and keep and n * m <= AUTOGRAD_MAX_PAIRS:
        r_lse, r_ws, r_wt, c_lse, c_ws, c_wt = _dense_autograd(a, c, pairs, rows, columns)
    else:
        r_lse, r_ws, r_wt, c_lse, c_ws, c_wt = _TiledLSE.apply(  # type: ignore[no-untyped-call]
            a, c, pairs, rows, columns, tile, keep
        )
    row_stats = SideStats(r_lse, r_ws, r_wt) if weighted else SideStats(r_lse)
    col_stats = SideStats(c_lse, c_ws, c_wt) if weighted else SideStats(c_lse)
    return LSEResult(rows=row_stats if rows else None, columns=col_stats if columns else None)


def safe_logsumexp(x: Tensor, dim: int) -> Tensor:
    """``logsumexp`` that returns ``-inf`` (with zero gradient, not NaN) for all ``-inf`` slices."""
    peak = x.detach().amax(dim, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    total = torch.exp(x - peak).sum(dim)
    empty = total == 0  # NaN totals are not "empty": NaN propagates, never a silent -inf
    logged = torch.log(torch.where(empty, torch.ones_like(total), total)) + peak.squeeze(dim)
    return torch.where(empty, torch.full_like(logged, _NEG_INF), logged)


def _plain_logsumexp(x: Tensor, dim: int) -> Tensor:
    """``logsumexp`` of finite logits in five autograd-visible operations.

    ``torch.logsumexp`` guards against infinite maxima with extra passes; on the small dense
    path those passes cost more than the arithmetic (measured, 1 thread, rows and columns with
    backward: 226 µs against 310 µs at 256 × 256). Infinite logits come out NaN here (not inf):
    the losses' value checks reject both.
    """
    peak = x.detach().amax(dim, keepdim=True)
    return (x - peak).exp().sum(dim).log() + peak.squeeze(dim)


def safe_logaddexp(x: Tensor, y: Tensor) -> Tensor:
    """``logaddexp`` that maps ``(-inf, -inf)`` to ``-inf`` with zero gradient instead of NaN."""
    x, y = torch.broadcast_tensors(x, y)  # type: ignore[no-untyped-call]
    return safe_logsumexp(torch.stack([x, y]), dim=0)


def _add_optional(x: Tensor | None, y: Tensor | None) -> Tensor | None:
    if x is None:
        return y
    return x if y is None else x + y


def _accumulation_dtype(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _online_update(logits: Tensor, dim: int, run_max: Tensor, run_sum: Tensor, buf: Tensor) -> None:
    """Fold one tile into running (max, Σ exp(x - max)) along ``dim``, in place."""
    new_max = torch.maximum(run_max, logits.amax(dim))
    shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
    torch.sub(logits, shift.unsqueeze(dim), out=buf).exp_()
    run_sum.mul_(torch.exp(run_max - shift)).add_(buf.sum(dim))
    run_max.copy_(new_max)


def _dense_autograd(
    a: Tensor, c: Tensor, pairs: PairRule | None, rows: bool, columns: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The dense path with plain autograd ops (small ``n·m``): same outputs as :class:`_TiledLSE`.

    ``S`` is one product and autograd's backward the two others, as on the kept path.
    """
    empty = a.new_empty(0)
    logits = a @ c.T  # (n, m)
    r_ws = r_wt = c_ws = c_wt = empty
    lse_fn: Callable[[Tensor, int], Tensor] = _plain_logsumexp
    if pairs is not None:
        tp = _tile(pairs, slice(0, a.shape[0]), slice(0, c.shape[0]), a.dtype)
        if tp.weight is not None:
            weighted = logits * tp.weight
            if rows:
                r_ws, r_wt = weighted.sum(1), tp.weight.sum(1)
            if columns:
                c_ws, c_wt = weighted.sum(0), tp.weight.sum(0)
        if tp.exclude is not None or tp.log_weight is not None:
            logits = apply_tile(logits, tp)
            lse_fn = safe_logsumexp  # rows with nothing counted: -inf with zero gradient
    r_lse = lse_fn(logits, 1) if rows else empty
    c_lse = lse_fn(logits, 0) if columns else empty
    return r_lse, r_ws, r_wt, c_lse, c_ws, c_wt


def keeps_logits(
    n: int, m: int, like: Tensor, needs_grad: bool, memory_budget: int | None, copies: int = 1
) -> bool:
    """Whether ``copies`` of the ``n × m`` logits (dtype of ``like``) stay for backward.

    The rule of ``memory_budget`` (see :func:`pairwise_lse`), shared with the losses that tile
    their own logits (SigLIP).
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    return needs_grad and n * m * like.element_size() * copies <= budget


def block_shape(n: int, m: int, tile: int, keep: bool, wide: bool = False) -> tuple[int, int]:
    """Block shape ``(rows, cols)``: ``tile × tile``, or full rows of ``~tile²`` entries if kept.

    ``wide`` (rows only, unweighted, kept: no per-block buffer exists) takes at least
    :data:`WIDE_ROWS` rows: backward adds each block's ``Eᵀ A`` into the whole ``(m, d)``
    candidate gradient, so fewer blocks mean fewer passes over it and better-shaped products.
    """
    if keep:  # full rows: each block of the kept S is contiguous
        rows = max(1, tile * tile // max(m, 1))
        return min(n, max(rows, WIDE_ROWS) if wide else rows), m
    return min(tile, n), min(tile, m)


class _TiledLSE(torch.autograd.Function):
    """Blockwise forward with online log-sum-exp; backward from kept or recomputed blocks."""

    @staticmethod
    def forward(
        ctx: Any,
        a: Tensor,
        c: Tensor,
        pairs: PairRule | None,
        rows: bool,
        columns: bool,
        tile: int,
        keep: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        n, m = a.shape[0], c.shape[0]
        weighted = pairs is not None and pairs.has_weights
        empty = a.new_empty(0)
        row_lse = a.new_empty(n) if rows else empty
        row_ws = a.new_zeros(n) if rows and weighted else empty
        row_wt = a.new_zeros(n) if rows and weighted else empty
        col_max = a.new_full((m,), _NEG_INF) if columns else empty
        col_sum = a.new_zeros(m) if columns else empty
        col_ws = a.new_zeros(m) if columns and weighted else empty
        col_wt = a.new_zeros(m) if columns and weighted else empty
        # Rows only and S kept: each block holds full rows, so its row max is final; the kept
        # buffer then holds E = exp(S - max) (one exp pass, in place) and backward needs only
        # the row scaling P = E / Σ_j E (no second exp pass).
        keep_exp = keep and rows and not columns
        ctx.scale_operands = keep_exp and not weighted  # see backward
        tr, tc = block_shape(n, m, tile, keep, wide=ctx.scale_operands)
        single = tr == n and tc == m
        row_total = a.new_empty(n) if keep_exp else empty
        # One buffer for S (kept: all of it, else one block), one for exp/weights; reused.
        s_flat = a.new_empty(n * m if keep else tr * tc)
        e_flat = a.new_empty(0 if keep_exp and not weighted else tr * tc)
        # kept pair weights (zeros where a tile has none)
        w_flat = a.new_zeros(n * m if keep and weighted else 0)
        for r0 in range(0, n, tr):
            r1 = min(r0 + tr, n)
            a_rows = a[r0:r1]
            run_max = a.new_full((r1 - r0,), _NEG_INF)
            run_sum = a.new_zeros(r1 - r0)
            for c0 in range(0, m, tc):
                c1 = min(c0 + tc, m)
                shape = (r1 - r0, c1 - c0)
                size = shape[0] * shape[1]
                offset = r0 * m if keep else 0  # kept blocks are full rows: S[r0:r1] in place
                s = s_flat[offset : offset + size].view(shape)
                e = e_flat[:size].view(shape) if e_flat.numel() else e_flat
                torch.mm(a_rows, c[c0:c1].T, out=s)  # (r, c) logits
                tp = _tile(pairs, slice(r0, r1), slice(c0, c1), a.dtype) if pairs else None
                if tp is not None:
                    if tp.weight is not None:
                        if keep:  # the weights too: backward reads them, no recompute
                            w_flat[offset : offset + size].view(shape).copy_(tp.weight)
                        torch.mul(s, tp.weight, out=e)
                        if rows:
                            row_ws[r0:r1] += e.sum(1)
                            row_wt[r0:r1] += tp.weight.sum(1)
                        if columns:
                            col_ws[c0:c1] += e.sum(0)
                            col_wt[c0:c1] += tp.weight.sum(0)
                    _apply_tile_(s, tp)
                if keep_exp:
                    peak = s.amax(1)
                    shift = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
                    s.sub_(shift[:, None]).exp_()  # E; excluded pairs: exp(-inf) = 0
                    torch.sum(s, 1, out=row_total[r0:r1])
                    row_lse[r0:r1] = torch.log(row_total[r0:r1]) + shift
                    continue
                if single:  # the whole S is this tile: fused log-sum-exp, no running state
                    lse_fn = safe_logsumexp if tp is not None else torch.logsumexp
                    row_lse = lse_fn(s, 1) if rows else empty
                    col_lse = lse_fn(s, 0) if columns else empty
                    continue
                if rows:
                    _online_update(s, 1, run_max, run_sum, e)
                if columns:
                    _online_update(s, 0, col_max[c0:c1], col_sum[c0:c1], e)
            if rows and not single and not keep_exp:
                row_lse[r0:r1] = torch.log(run_sum) + run_max
        if not single or keep_exp:
            col_lse = torch.log(col_sum) + col_max if columns else empty
        # The kept (masked) S goes through save_for_backward so that autograd frees it after
        # backward even while the caller still holds the loss.
        kept = s_flat.view(n, m) if keep else empty
        ctx.save_for_backward(a, c, row_lse, col_lse, kept, row_total, w_flat)
        ctx.pairs, ctx.rows, ctx.columns, ctx.keep = pairs, rows, columns, keep
        ctx.keep_exp = keep_exp
        ctx.blocks = (tr, tc)
        ctx.mark_non_differentiable(row_wt, col_wt)
        return row_lse, row_ws, row_wt, col_lse, col_ws, col_wt

    @staticmethod
    def backward(
        ctx: Any,
        g_row_lse: Tensor,
        g_row_ws: Tensor,
        _g_row_wt: Tensor,
        g_col_lse: Tensor,
        g_col_ws: Tensor,
        _g_col_wt: Tensor,
    ) -> tuple[Tensor | None, ...]:
        a, c, row_lse, col_lse, kept, row_total, w_flat = ctx.saved_tensors
        pairs: PairRule | None = ctx.pairs
        rows: bool = ctx.rows
        columns: bool = ctx.columns
        keep: bool = ctx.keep
        need_a, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n, m = a.shape[0], c.shape[0]
        weighted = pairs is not None and pairs.has_weights
        grad_a = a.new_zeros(a.shape) if need_a else None
        grad_c = c.new_zeros(c.shape) if need_c else None
        # Rows/columns with nothing counted have lse = -inf and all-excluded tiles: any finite
        # shift gives exp(-inf - shift) = 0 there.
        lowest = torch.finfo(a.dtype).min  # clamp keeps NaN (never hides one)
        row_shift, col_shift = row_lse.clamp(min=lowest), col_lse.clamp(min=lowest)
        row_scale = a.new_empty(0)
        if ctx.keep_exp:  # P = E / Σ_j E: the row's gradient over its total (0 if none counted)
            row_scale = torch.where(row_total == 0, 0.0, g_row_lse / row_total)
        tr, tc = ctx.blocks
        scale_operands = ctx.scale_operands
        s_flat = kept.view(-1) if keep else a.new_empty(tr * tc)
        g_flat = a.new_empty(0 if scale_operands else tr * tc)
        # the kept logits must survive a second backward (retain_graph): never modified in place
        h_flat = a.new_empty(tr * tc) if keep and rows and columns else None
        for r0 in range(0, n, tr):
            r1 = min(r0 + tr, n)
            a_rows = a[r0:r1]
            for c0 in range(0, m, tc):
                c1 = min(c0 + tc, m)
                shape = (r1 - r0, c1 - c0)
                size = shape[0] * shape[1]
                offset = r0 * m if keep else 0
                s = s_flat[offset : offset + size].view(shape)
                # kept: masks are in S and the weights in w_flat; else expand the pair rule
                tp = None
                if pairs is not None and not keep:
                    tp = _tile(pairs, slice(r0, r1), slice(c0, c1), a.dtype)
                weight = tp.weight if tp is not None else None
                if weighted and keep:
                    weight = w_flat[offset : offset + size].view(shape)
                if not keep:
                    torch.mm(a_rows, c[c0:c1].T, out=s)
                    if tp is not None:
                        _apply_tile_(s, tp)
                if scale_operands:
                    # dL/dS = diag(row_scale) E: scale the (r, d) operands, not the (r, m) block
                    # (no pass over E, no g buffer); kept blocks are full rows, so this is the
                    # only block of these rows.
                    scale = row_scale[r0:r1, None]
                    if grad_a is not None:
                        torch.mm(s, c, out=grad_a[r0:r1]).mul_(scale)
                    if grad_c is not None:
                        grad_c.addmm_(s.T, a_rows * scale)
                    continue
                # g = dL/dS for this tile, built in place.
                g = g_flat[:size].view(shape)
                if ctx.keep_exp:
                    torch.mul(s, row_scale[r0:r1, None], out=g)
                elif rows:
                    torch.sub(s, row_shift[r0:r1, None], out=g).exp_()
                    g.mul_(g_row_lse[r0:r1, None])
                    if columns:
                        if h_flat is not None:
                            h = torch.sub(s, col_shift[None, c0:c1], out=h_flat[:size].view(shape))
                        else:
                            h = s.sub_(col_shift[None, c0:c1])
                        g.add_(h.exp_().mul_(g_col_lse[None, c0:c1]))
                else:
                    torch.sub(s, col_shift[None, c0:c1], out=g).exp_()
                    g.mul_(g_col_lse[None, c0:c1])
                if weight is not None:
                    coeff = g_row_ws[r0:r1, None] if rows else 0.0
                    if columns:
                        coeff = coeff + g_col_ws[None, c0:c1]
                    g.addcmul_(weight, torch.as_tensor(coeff, dtype=g.dtype))
                if grad_a is not None:
                    grad_a[r0:r1].addmm_(g, c[c0:c1])
                if grad_c is not None:
                    grad_c[c0:c1].addmm_(g.T, a_rows)
        return grad_a, grad_c, None, None, None, None, None


def _tile(pairs: PairRule, rows: slice, cols: slice, dtype: torch.dtype) -> TilePairs:
    """Return the rule's tile with float fields in the accumulation dtype."""
    tp = pairs.tile(rows, cols)
    return TilePairs(
        exclude=tp.exclude,
        weight=None if tp.weight is None else tp.weight.to(dtype),
        log_weight=None if tp.log_weight is None else tp.log_weight.to(dtype),
    )


def _apply_tile_(logits: Tensor, tile: TilePairs) -> None:
    """In-place :func:`apply_tile` on a tile buffer."""
    if tile.log_weight is not None:
        logits.add_(tile.log_weight)
    if tile.exclude is not None:
        logits.masked_fill_(tile.exclude, _NEG_INF)
