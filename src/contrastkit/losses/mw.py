"""MW loss: a Mann–Whitney / AUC surrogate over every positive–negative score pair in the batch.

Sheikholeslami et al., "Optimizing What Matters: AUC-Driven Learning for Robust Neural
Retrieval" (arXiv 2510.00137). Each query's positive score is compared with the *global* pool of
negative scores — every entry of the batch score matrix except the positives — so that scores are
calibrated across queries (InfoNCE is invariant to per-query score shifts; MW is not).

The ``B × |S⁻|`` pair terms are computed in tiles by a custom autograd function that recomputes
each tile in backward, so the extra memory is one tile, not ``B·|S⁻|``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_chunk_size,
    check_reduction,
    reduce,
    validate_embeddings,
    validate_pair,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature

#: Default tile edge (positives × negatives per tile): 1024 × 1024 fp32 = 4 MiB.
DEFAULT_CHUNK = 1024


class _AllPairsSoftplus(torch.autograd.Function):
    """``out_i = Σ_n softplus(neg_n - pos_i)`` in ``chunk²`` tiles, recomputed in backward."""

    @staticmethod
    def forward(ctx: Any, pos: Tensor, neg: Tensor, chunk: int) -> Tensor:
        out = torch.zeros_like(pos)  # (B,)
        for r0 in range(0, pos.shape[0], chunk):
            p = pos[r0 : r0 + chunk, None]  # (c, 1)
            for c0 in range(0, neg.shape[0], chunk):
                out[r0 : r0 + chunk] += F.softplus(neg[None, c0 : c0 + chunk] - p).sum(dim=1)
        ctx.save_for_backward(pos, neg)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, Tensor, None]:
        pos, neg = ctx.saved_tensors
        chunk: int = ctx.chunk
        grad_pos = torch.zeros_like(pos)  # (B,)
        grad_neg = torch.zeros_like(neg)  # (N,)
        for r0 in range(0, pos.shape[0], chunk):
            p = pos[r0 : r0 + chunk, None]  # (c, 1)
            g = grad_out[r0 : r0 + chunk, None]  # (c, 1)
            for c0 in range(0, neg.shape[0], chunk):
                # d softplus(n - p) / dn = sigmoid(n - p) = - d/dp
                w = g * torch.sigmoid(neg[None, c0 : c0 + chunk] - p)  # (c, nc)
                grad_pos[r0 : r0 + chunk] -= w.sum(dim=1)
                grad_neg[c0 : c0 + chunk] += w.sum(dim=0)
        return grad_pos, grad_neg, None


@full_precision
def mw_loss_from_scores(
    scores: Tensor,
    *,
    temperature: float | Tensor = 0.01,
    chunk_size: int | None = None,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""MW loss from a ``(B, M)`` score matrix whose positives are on the diagonal ``(i, i)``.

    .. math::
        \mathcal{L}_\text{MW} = \frac{1}{B} \sum_{i=1}^{B} \sum_{s^- \in S^-}
            \log\big(1 + e^{-(s_i^+ - s^-)/\tau}\big),
        \qquad S^- = \{ s_{kj} : j \ne k \}

    ``S⁻`` is the global negative pool: every off-positive entry of the score matrix, including
    the negatives of *other* queries (``|S⁻| = B·M − B``). The positive is not in any
    denominator (each term is a binary logistic loss on one ordered pair). The sum over ``S⁻`` is
    a **sum**, not a mean (paper Eq. 3): the value grows with ``B·M``; a mean over negatives would
    only rescale it by ``1/|S⁻|`` (a learning-rate change).

    Since ``1[s⁺ ≤ s⁻] ≤ log(1 + e^{-(s⁺ - s⁻)/τ}) / log 2``, ``B · L_MW / log 2`` bounds the
    number of mis-ordered (positive, negative) pairs, i.e. ``(1 − AUC)·B·|S⁻|``.

    Cost: ``B·|S⁻| = B²(M − 1)`` softplus evaluations (forward, and again in backward), in
    ``chunk_size × chunk_size`` tiles; extra memory ``O(B·M + chunk_size²)``.

    Args:
        scores: ``(B, M)`` scores, ``M >= B``; ``scores[i, i]`` is query ``i``'s positive.
        temperature: ``τ > 0`` (float or scalar tensor, e.g. learnable). Paper default 0.01.
        chunk_size: Tile edge; ``None`` means 1024.
        reduction: ``'mean'`` (the paper's ``1/B``), ``'sum'`` or ``'none'`` (``(B,)`` per query).
        check_values: Check for NaN/inf (one host sync).

    Returns:
        The loss (fp32 for fp16/bf16 scores).

    Raises:
        ValueError: On bad shapes/dtypes, ``M < B``, no negative at all, non-finite scores,
            ``temperature <= 0`` or a bad ``chunk_size``.

    Example:
        >>> mw_loss_from_scores(torch.randn(4, 12), temperature=0.05).shape
        torch.Size([])
    """
    checks = validate_embeddings(
        scores, "scores", check_values=check_values, temperature=temperature
    )
    b, m = scores.shape
    if m < b:
        raise ValueError(
            f"scores must have at least as many columns as rows (M >= B), got {(b, m)}"
        )
    if m < 2:
        raise ValueError("scores has no negative entry: need M >= 2 columns")
    check_chunk_size(chunk_size)
    check_reduction(reduction)
    return checks.verify(_mw(scores, temperature, chunk_size, reduction))


def _mw(
    scores: Tensor, temperature: float | Tensor, chunk_size: int | None, reduction: Reduction
) -> Tensor:
    """The MW loss of validated scores."""
    b, m = scores.shape
    chunk = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    logits = scale_by_temperature(scores, temperature)  # (B, M)
    eye = torch.zeros(b, m, dtype=torch.bool, device=scores.device)
    eye[:, :b] = torch.eye(b, dtype=torch.bool, device=scores.device)
    pos = logits.diagonal()  # (B,)
    neg = logits[~eye]  # (B·M − B,) the global pool S⁻
    per_query: Tensor = _AllPairsSoftplus.apply(pos, neg, chunk)  # type: ignore[no-untyped-call]
    return reduce(per_query, reduction)


@full_precision
def mw_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.01,
    normalize: bool = True,
    chunk_size: int | None = None,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    """MW loss of queries ``a`` against passages ``b``; see :func:`mw_loss_from_scores`.

    Data format: ``a`` is ``(B, d)`` queries; ``b`` is ``(M, d)`` passages with ``M >= B`` where
    row ``i < B`` is the positive of query ``i`` and rows ``B..M-1`` are extra (hard) negatives,
    e.g. ``torch.cat([positives, hard_negatives.flatten(0, 1)])`` for ``H`` hard negatives per
    query (``M = B(1 + H)``; the paper uses ``H = 5``). Every passage that is not a query's own
    positive is a negative for *every* query, and every query's negatives join the global pool.

    Defaults (paper): ``temperature=0.01``, cosine scores (``normalize=True``).

    Args:
        a: ``(B, d)`` query embeddings.
        b: ``(M, d)`` passage embeddings, ``M >= B``.
        temperature: ``τ > 0`` (float or scalar tensor).
        normalize: L2-normalise ``a`` and ``b`` (cosine scores); ``False`` uses dot products.
        chunk_size: Tile edge of the pair computation (``None``: 1024).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)``).
        check_values: Check for NaN/inf (one host sync).

    Returns:
        The loss (fp32 for fp16/bf16 inputs).

    Raises:
        ValueError: On bad shapes/dtypes, ``M < B``, ``M < 2`` (no negative), non-finite values,
            an all-zero row with ``normalize``, bad hyper-parameters or a non-finite result.

    Example:
        >>> q, pos, hard = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 5, 8)
        >>> loss = mw_loss(q, torch.cat([pos, hard.flatten(0, 1)]))
    """
    checks = validate_pair(
        a,
        b,
        min_rows=1,
        same_rows=False,
        normalize=normalize,
        check_values=check_values,
        temperature=temperature,
    )
    if b.shape[0] < a.shape[0]:
        raise ValueError(
            f"b must hold at least one passage per query (rows 0..B-1 are the positives): "
            f"got {b.shape[0]} passages for {a.shape[0]} queries"
        )
    if b.shape[0] < 2:
        raise ValueError("b must hold at least 2 passages: with one there is no negative")
    check_chunk_size(chunk_size)
    check_reduction(reduction)
    za, zb = prepare(a, normalize), prepare(b, normalize)
    scores = za @ zb.t()  # (B, M)
    return checks.verify(_mw(scores, temperature, chunk_size, reduction))


class MWLoss(LossModule):
    """MW (Mann–Whitney / AUC) loss; thin wrapper of :func:`mw_loss`.

    Reference: Sheikholeslami et al., "Optimizing What Matters: AUC-Driven Learning for Robust
    Neural Retrieval", arXiv 2510.00137 (Eq. 3). No peer implementation exists.

    Example:
        >>> loss_fn = MWLoss(temperature=0.05)
        >>> q, passages = torch.randn(4, 8), torch.randn(24, 8)  # 4 positives + 20 hard negatives
        >>> loss = loss_fn(q, passages)
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.01,
        normalize: bool = True,
        chunk_size: int | None = None,
        reduction: Reduction = "mean",
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            chunk_size=chunk_size,
            reduction=reduction,
            check_values=check_values,
        )

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Loss of ``(B, d)`` queries against ``(M, d)`` passages (positives first)."""
        return mw_loss(a, b, temperature=self.tau(), **self.options())
