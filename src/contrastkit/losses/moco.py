"""MoCo: InfoNCE with the keys of a memory queue as negatives.

MoCo (He et al., CVPR 2020) contrasts each query ``q_i`` with its key ``k_i`` (positive) and the
``K`` keys of a memory queue (:class:`contrastkit.MemoryQueue`, the negatives); the other keys of
the batch are *not* negatives. :mod:`contrastkit.losses.mochi` adds synthetic hard negatives.

References:
    [1] He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_reduction,
    check_same_dim,
    check_tensor,
    reduce,
    validate_pair,
)
from contrastkit.engine import pairwise_lse, safe_logsumexp
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature


@full_precision
def moco_loss(
    q: Tensor,
    k: Tensor,
    queue_features: Tensor,
    *,
    temperature: float | Tensor = 0.2,
    extra_negatives: Tensor | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """MoCo InfoNCE: key ``k_i`` is the positive, queue rows (and optional extras) the negatives.

    ::

        ℓ_i = -log  exp(q_i·k_i/τ) / ( exp(q_i·k_i/τ) + Σ_{n∈queue} exp(q_i·n/τ)
                                        + Σ_m exp(q_i·h_im/τ) )

    The positive **is** in the denominator; the other in-batch keys are **not** negatives (unlike
    :func:`contrastkit.losses.info_nce.info_nce`, which equals this loss when called with
    ``negatives=queue_features, positive_ids=torch.zeros(B)``). Keys and queue rows are used as
    given: MoCo computes keys without gradient (momentum encoder), so pass them from
    ``torch.no_grad()`` if that is what you want. Memory: the queue term runs on the similarity
    engine (``O((B + K)·d)`` on its tiled path); per-query extras cost ``O(B·m·d)``.

    Args:
        q: ``(B, d)`` queries.
        k: ``(B, d)`` keys, row-aligned positives.
        queue_features: ``(K, d)`` shared negatives (e.g. :meth:`MemoryQueue.get_features`);
            ``K`` may be 0 when ``extra_negatives`` are given.
        temperature: ``τ > 0``; default 0.2 (MoCo-v2; MoCo-v1 used 0.07).
        extra_negatives: ``(B, m, d)`` per-query negatives (e.g. :func:`mochi_negatives`).
        normalize: L2-normalise every embedding first.
        reduction: ``'mean' | 'sum' | 'none'`` over queries.
        chunk_size: tile edge of the similarity engine (None: automatic).
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf and ``τ > 0`` (host sync).

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``), fp32 for half inputs.

    Raises:
        ValueError: on mismatched shapes or dtypes, NaN/inf, an all-zero row with
            ``normalize``, ``τ <= 0``, no negatives at all, or a non-finite result.

    Peers: the MoCo reference code (``moco/builder.py``: ``cat([l_pos, l_neg]) / T`` and
    cross-entropy with label 0) computes exactly this.

    Example:
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> moco_loss(q, k, queue, temperature=0.2).shape
        torch.Size([])

    """
    check_tensor(queue_features, "queue_features", min_rows=0)
    extra = [("queue_features", queue_features)]
    if extra_negatives is not None:
        check_tensor(extra_negatives, "extra_negatives", ndim=3, min_rows=0)
        if extra_negatives.shape[0] != getattr(q, "shape", (None,))[0]:
            raise ValueError(
                f"extra_negatives must have shape (B, m, d) with B the rows of q, "
                f"got {tuple(extra_negatives.shape)}"
            )
        extra.append(("extra_negatives", extra_negatives))
    checks = validate_pair(
        q,
        k,
        names=("q", "k"),
        min_rows=1,
        normalize=normalize,
        check_values=check_values,
        temperature=temperature,
        extra=extra,
    )
    for name, x in extra:
        check_same_dim(q, x, ("q", name))
    check_reduction(reduction)
    n_queue = queue_features.shape[0]
    n_extra = 0 if extra_negatives is None else extra_negatives.shape[1]
    if n_queue + n_extra == 0:
        raise ValueError("queue_features is empty and no extra_negatives: no negatives")

    queries = scale_by_temperature(prepare(q, normalize), temperature)  # (B, d), q / τ
    zk = prepare(k, normalize).to(queries.dtype)  # (B, d)
    positive = (queries * zk).sum(-1)  # (B,) q·k / τ
    parts = [positive]  # per-query log-sum-exp terms of the denominator
    if n_queue > 0:
        zq = prepare(queue_features, normalize).to(queries.dtype)  # (K, d)
        stats = pairwise_lse(queries, zq, chunk_size=chunk_size, memory_budget=memory_budget).rows
        assert stats is not None
        parts.append(stats.lse)  # (B,) log Σ_n exp(q·n / τ)
    if extra_negatives is not None and n_extra > 0:
        zx = prepare(extra_negatives, normalize).to(queries.dtype)  # (B, m, d)
        parts.append(safe_logsumexp(torch.einsum("bd,bmd->bm", queries, zx), dim=1))  # (B,)
    denominator = safe_logsumexp(torch.stack(parts), dim=0)  # (B,)
    return checks.verify(reduce(denominator - positive, reduction))


class MoCoLoss(LossModule):
    """Module wrapper of :func:`moco_loss` (InfoNCE against a memory queue).

    Inputs: ``forward(q, k, queue_features, extra_negatives=None)``. Pair it with
    :class:`MemoryQueue`: read negatives, compute the loss, then ``queue.enqueue(k)``. Relation to
    siblings: :class:`InfoNCELoss` also uses in-batch keys as negatives; :class:`MoCHiLoss` adds
    synthetic hard negatives.

    Args:
        temperature: ``τ > 0``; default 0.2 (MoCo-v2).
        normalize: L2-normalise inputs.
        reduction: ``'mean' | 'sum' | 'none'``.
        chunk_size: tile edge of the similarity engine.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: value checks (see :func:`moco_loss`).

    Example:
        >>> loss_fn = MoCoLoss(temperature=0.2)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> loss_fn(q, k, queue).shape
        torch.Size([])

    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.2,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            check_values=check_values,
        )

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        queue_features: Tensor,
        extra_negatives: Tensor | None = None,
    ) -> Tensor:
        """Loss of queries ``q`` (B, d) vs keys ``k`` (B, d) and queue rows (K, d)."""
        return moco_loss(
            q,
            k,
            queue_features,
            extra_negatives=extra_negatives,
            temperature=self.tau(),
            **self.options(),
        )
