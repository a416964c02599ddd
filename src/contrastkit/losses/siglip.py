"""SigLIP: pairwise sigmoid loss with a learnable temperature and bias.

Reference:
    - [0] Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023.
      open_clip ``src/open_clip/loss.py::SigLipLoss``; big_vision.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_chunk_size,
    check_memory_budget,
    check_reduction,
    check_temperature,
    reduce,
    validate_pair,
)
from contrastkit.distributed import all_gather_with_grad
from contrastkit.engine import default_tile
from contrastkit.engine.lse import AUTOGRAD_MAX_PAIRS, block_shape, keeps_logits
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.temperature import LearnableTemperature


@full_precision
def siglip(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    bias: float | Tensor = -10.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
    gather_distributed: bool = False,
) -> Tensor:
    """Sigmoid loss over all ``B × B`` pairs, normalised by ``B``.

    With ``x_ij = <a_i, b_j> / τ + bias`` and ``y_ij = +1`` on the diagonal, ``-1`` elsewhere::

        ℓ_i = Σ_j -log σ(y_ij · x_ij) = Σ_j softplus(x_ij) - x_ii

    (``-log σ(-x) = softplus(x)`` and ``-log σ(x) = softplus(x) - x``). The loss is
    ``mean_i ℓ_i`` = ``Σ_ij … / B`` (open_clip's normalisation: by ``B``, not ``B²``). No softmax,
    so no denominator; the loss is symmetric in ``a`` and ``b`` by construction.

    Paths: small ``B × B`` is plain autograd. Larger, the identity above is summed in blocks by
    its own autograd Function, like the engine: when the logits fit in ``memory_budget`` they
    are kept for backward (three matrix products in all); otherwise ``chunk × chunk`` tiles are
    recomputed in backward (four products) and memory is ``O(B·d + chunk²)``.

    Defaults (SigLIP): ``τ = 0.1`` (``t' = log 10``), ``bias = -10``; :class:`SigLIPLoss` learns
    both.

    Args:
        a: ``(B, d)`` first modality.
        b: ``(B, d)`` second modality, row-aligned.
        temperature: ``τ`` > 0 (open_clip's ``logit_scale`` is ``1/τ``).
        bias: logit bias (float or scalar tensor).
        normalize: L2-normalise first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-anchor row sums ``ℓ_i``).
        chunk_size: None picks automatically; an int forces the chunked path with that tile.
        memory_budget: bytes the ``B × B`` logits may keep between forward and backward (None:
            1 GiB, as :func:`contrastkit.engine.pairwise_lse`; 0: always recompute).
        check_values: check for NaN/inf (a host sync).
        gather_distributed: under torch.distributed, pair this rank's rows of ``a`` with the
            ``b`` rows of **every** rank (gathered with gradient); each pair of the global batch
            is then counted on exactly one rank, and with DDP's gradient averaging the
            gradients equal those of the single-process loss on the global batch. A no-op
            without a multi-rank process group. (SigLIP's paper exchanges ``b`` chunks in a
            ring instead; the sum is the same.)

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on mismatched shapes or dtypes, B < 2, non-finite values or bias, an
            all-zero row with ``normalize``, τ ≤ 0, a bad reduction, or a non-finite result.

    Peers: equals open_clip ``SigLipLoss()(a, b, logit_scale=1/τ, logit_bias=bias)`` on
    normalised features.

    Examples:
        >>> loss = siglip(torch.randn(8, 16), torch.randn(8, 16), temperature=0.1, bias=-10.0)
    """
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    check_chunk_size(chunk_size)
    check_memory_budget(memory_budget)
    if isinstance(bias, Tensor):
        if bias.numel() != 1 or not bias.is_floating_point():
            raise ValueError(
                f"bias must be a number or a one-element tensor, got {tuple(bias.shape)}"
            )
        checks.finite("bias", bias)
    elif not isinstance(bias, (int, float)) or isinstance(bias, bool) or not math.isfinite(bias):
        raise ValueError(f"bias must be a finite number, got {bias!r}")

    za, zb = prepare(a, normalize, checks), prepare(b, normalize, checks)
    queries = scale_by_temperature(za, temperature)  # (B, d)
    bias_t = torch.as_tensor(bias, dtype=queries.dtype, device=queries.device).reshape(())
    positive = (queries * zb).sum(-1) + bias_t  # (B,) x_ii
    # Σ_j over the global batch: the positive column is among the keys either way.
    keys = all_gather_with_grad(zb) if gather_distributed else zb  # (m, d), m = W·B or B
    n, m = za.shape[0], keys.shape[0]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys, bias_t))
    keep = keeps_logits(n, m, queries, needs_grad, memory_budget)
    if chunk_size is None and n * m <= AUTOGRAD_MAX_PAIRS and (keep or not needs_grad):
        softplus_rows = _softplus_rows(queries, keys, bias_t)  # small: plain autograd
    else:
        tile = chunk_size or default_tile(queries.device)
        softplus_rows = _TiledSoftplusRows.apply(  # type: ignore[no-untyped-call]
            queries, keys, bias_t, tile, keep
        )
    losses = softplus_rows - positive  # (B,)
    return checks.verify(reduce(losses, reduction))


def _softplus_rows(queries: Tensor, keys: Tensor, bias: Tensor) -> Tensor:
    """``Σ_j softplus(q_i · k_j + bias)`` for a block of rows and columns.

    In the inputs' precision (fp32 for half inputs) even under autocast: :func:`siglip` runs
    with autocast off (at ``τ = 0.01`` bf16 logits cost ~1000× the error of the engine).
    """
    return F.softplus(queries @ keys.T + bias).sum(1)


class _TiledSoftplusRows(torch.autograd.Function):
    """``Σ_j softplus(x_ij)``, ``x = Q Kᵀ + bias``, in blocks; backward from kept or recomputed x.

    ``∂/∂x_ij = σ(x_ij)`` times the row's incoming gradient ``g_i``, so with ``G = σ(X) ∘ g``:
    ``∂Q = G K``, ``∂K = Gᵀ Q``, ``∂bias = Σ G``. Kept (``keep``): the forward writes ``X`` in
    blocks of full rows into one ``n × m`` buffer and backward costs 2 products (3 in all);
    recomputed: ``tile × tile`` blocks, 4 products, extra memory ``O((n + m)·d + tile²)`` —
    the engine's two paths (:mod:`contrastkit.engine.lse`) for the sigmoid loss. Gradients are
    accumulated into preallocated ``(n, d)``/``(m, d)`` tensors (no full-size gradient per block,
    which slicing inside autograd would create).
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, bias: Tensor, tile: int, keep: bool) -> Tensor:
        n, m = q.shape[0], k.shape[0]
        tr, tc = block_shape(n, m, tile, keep)
        out = q.new_zeros(n)
        x_flat = q.new_empty(n * m if keep else tr * tc)
        for r0, r1, c0, c1, x in _blocks(x_flat, n, m, tr, tc, keep):
            torch.addmm(bias, q[r0:r1], k[c0:c1].T, out=x)  # (r, c) x = q·k + bias
            out[r0:r1] += F.softplus(x).sum(1)
        ctx.save_for_backward(q, k, bias, x_flat.view(n, m) if keep else q.new_empty(0))
        ctx.blocks, ctx.keep = (tr, tc), keep
        return out

    @staticmethod
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:
        q, k, bias, kept = ctx.saved_tensors
        need_q, need_k, need_bias = ctx.needs_input_grad[:3]
        n, m = q.shape[0], k.shape[0]
        (tr, tc), keep = ctx.blocks, ctx.keep
        grad_q = torch.zeros_like(q) if need_q else None
        grad_k = torch.zeros_like(k) if need_k else None
        grad_bias = torch.zeros_like(bias)
        x_flat = kept.view(-1) if keep else q.new_empty(tr * tc)
        g_flat = q.new_empty(tr * tc)
        for r0, r1, c0, c1, x in _blocks(x_flat, n, m, tr, tc, keep):
            if not keep:
                torch.addmm(bias, q[r0:r1], k[c0:c1].T, out=x)
            g = torch.sigmoid(x, out=g_flat[: x.numel()].view(x.shape))  # kept x stays intact
            g.mul_(g_out[r0:r1, None])
            if need_bias:
                grad_bias += g.sum()
            if grad_q is not None:
                grad_q[r0:r1].addmm_(g, k[c0:c1])
            if grad_k is not None:
                grad_k[c0:c1].addmm_(g.T, q[r0:r1])
        return grad_q, grad_k, grad_bias if need_bias else None, None, None


def _blocks(
    flat: Tensor, n: int, m: int, tr: int, tc: int, keep: bool
) -> Iterator[tuple[int, int, int, int, Tensor]]:
    """``(r0, r1, c0, c1, view)`` per block; kept blocks are full rows of the ``n × m`` buffer."""
    for r0 in range(0, n, tr):
        r1 = min(r0 + tr, n)
        for c0 in range(0, m, tc):
            c1 = min(c0 + tc, m)
            size = (r1 - r0) * (c1 - c0)
            offset = r0 * m if keep else 0
            yield r0, r1, c0, c1, flat[offset : offset + size].view(r1 - r0, c1 - c0)


class SigLIPLoss(LossModule):
    """SigLIP loss with learnable temperature and bias; see :func:`siglip`.

    Inputs: ``forward(a, b)`` paired ``(B, d)`` embeddings of two modalities. Prefer it to
    :class:`CLIPLoss` when the batch is split across many devices (no global softmax) or when
    pairs may be noisy. The bias starts very negative (-10) to offset the ``B - 1`` negatives
    per positive.

    Bounds: the learnable temperature stays in ``[1e-3, 100]`` (logit scale in ``[0.01, 1000]``,
    a projection: see :class:`contrastkit.LearnableTemperature`), the range of SigLIP's
    ``t' = log(1/τ)``; the bias is unbounded (SigLIP does not bound it either).

    Args:
        temperature: initial temperature (SigLIP: 0.1, i.e. logit scale 10).
        bias: initial bias (SigLIP: -10).
        learnable: learn temperature and bias.
        normalize: L2-normalise first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: tile size of the chunked path (None: automatic).
        memory_budget: bytes the logits may keep for backward (see :func:`siglip`).
        gather_distributed: pair local rows with every rank's rows (see :func:`siglip`).
        check_values: value checks (see :func:`siglip`).

    Examples:
        >>> loss_fn = SigLIPLoss()
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        bias: float = -10.0,
        learnable: bool = True,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        gather_distributed: bool = False,
        check_values: bool = True,
    ) -> None:
        check_temperature(temperature)
        tau = LearnableTemperature(init=temperature, min=1e-3)
        tau.log_inverse.requires_grad_(learnable)
        super().__init__(
            temperature=tau,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            gather_distributed=gather_distributed,
            check_values=check_values,
        )
        if not isinstance(bias, (int, float)) or isinstance(bias, bool) or not math.isfinite(bias):
            raise ValueError(f"bias must be a finite number, got {bias!r}")
        self.bias = nn.Parameter(torch.tensor(float(bias)))
        self.bias.requires_grad_(learnable)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Sigmoid loss of paired ``(B, d)`` embeddings."""
        return siglip(a, b, temperature=self.tau(), bias=self.bias, **self.options())
