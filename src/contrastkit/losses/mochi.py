"""MoCo InfoNCE with queue negatives, and MoCHi hard-negative mixing on top of it.

MoCo (He et al., CVPR 2020) contrasts each query ``q_i`` with its key ``k_i`` (positive) and the
``K`` keys of a memory queue (negatives); the other keys of the batch are *not* negatives.
MoCHi (Kalantidis et al., NeurIPS 2020) adds, per query, synthetic negatives mixed from that
query's hardest queue negatives:

1. ``Q̃_i`` = the ``N`` queue rows with the largest ``q_iᵀ n`` (per query),
2. ``s`` mixes ``h = normalize(α n_p + (1 - α) n_r)``, ``n_p, n_r ∈ Q̃_i``, ``α ~ U(0, 1)``,
3. ``s'`` query mixes ``h' = normalize(β q_i + (1 - β) n_r)``, ``n_r ∈ Q̃_i``, ``β ~ U(0, 0.5)``,

which join the denominator with the same temperature, are detached, and are never enqueued.

References:
    [1] He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
    [2] Kalantidis et al., "Hard Negative Mixing for Contrastive Learning", NeurIPS 2020.
        https://arxiv.org/abs/2010.01028 (no official code; project page europe.naverlabs.com/mochi)

"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_embeddings,
    check_pair,
    check_reduction,
    check_same_dim,
    check_temperature,
    reduce,
)
from contrastkit.engine import pairwise_lse, safe_logsumexp
from contrastkit.losses._common import prepare, scale_by_temperature


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
        check_values: check for NaN/inf and ``τ > 0`` (host sync).

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``), fp32 for half inputs.

    Raises:
        ValueError: on mismatched shapes, NaN/inf, ``τ <= 0``, or no negatives at all.

    Peers: the MoCo reference code (``moco/builder.py``: ``cat([l_pos, l_neg]) / T`` and
    cross-entropy with label 0) computes exactly this.

    Example:
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> moco_loss(q, k, queue, temperature=0.2).shape
        torch.Size([])

    """
    check_embeddings(q, "q", check_finite=check_values)
    check_embeddings(k, "k", check_finite=check_values)
    check_pair(q, k, ("q", "k"))
    check_reduction(reduction)
    if check_values:
        check_temperature(temperature)
    if not isinstance(queue_features, Tensor) or queue_features.ndim != 2:
        raise ValueError(
            f"queue_features must be a (K, {q.shape[1]}) tensor, got "
            f"{getattr(queue_features, 'shape', type(queue_features).__name__)}"
        )
    n_queue = queue_features.shape[0]
    if n_queue > 0:
        check_embeddings(queue_features, "queue_features", check_finite=check_values)
        check_same_dim(q, queue_features, ("q", "queue_features"))
    n_extra = 0
    if extra_negatives is not None:
        check_embeddings(extra_negatives, "extra_negatives", ndim=3, check_finite=False)
        if extra_negatives.shape[0] != q.shape[0] or extra_negatives.shape[2] != q.shape[1]:
            raise ValueError(
                f"extra_negatives must have shape ({q.shape[0]}, m, {q.shape[1]}), "
                f"got {tuple(extra_negatives.shape)}"
            )
        if check_values and not bool(torch.isfinite(extra_negatives).all()):
            raise ValueError("extra_negatives contains NaN or inf values")
        n_extra = extra_negatives.shape[1]
    if n_queue + n_extra == 0:
        raise ValueError("queue_features is empty and no extra_negatives: no negatives")

    queries = scale_by_temperature(prepare(q, normalize), temperature)  # (B, d), q / τ
    zk = prepare(k, normalize).to(queries.dtype)  # (B, d)
    positive = (queries * zk).sum(-1)  # (B,) q·k / τ
    parts = [positive]  # per-query log-sum-exp terms of the denominator
    if n_queue > 0:
        zq = prepare(queue_features, normalize).to(queries.dtype)  # (K, d)
        stats = pairwise_lse(queries, zq, chunk_size=chunk_size).rows
        assert stats is not None
        parts.append(stats.lse)  # (B,) log Σ_n exp(q·n / τ)
    if extra_negatives is not None and n_extra > 0:
        zx = prepare(extra_negatives, normalize).to(queries.dtype)  # (B, m, d)
        parts.append(safe_logsumexp(torch.einsum("bd,bmd->bm", queries, zx), dim=1))  # (B,)
    denominator = safe_logsumexp(torch.stack(parts), dim=0)  # (B,)
    return reduce(denominator - positive, reduction)


def mochi_negatives(
    query: Tensor,
    queue_features: Tensor,
    n_hard: int,
    n_mix: int,
    n_query_mix: int,
    *,
    generator: torch.Generator | None = None,
    normalize: bool = True,
    check_values: bool = True,
) -> Tensor:
    """MoCHi synthetic hard negatives, sampled independently for each query.

    For each query ``q_i`` (all per query: its own top-``n_hard`` set and its own random draws)::

        Q̃_i   = top-n_hard rows n of the queue by q_iᵀn
        h_ik  = normalize(α_ik n_p + (1 - α_ik) n_r),  p, r ~ U(Q̃_i),  α_ik ~ U(0, 1)
        h'_ik = normalize(β_ik q_i + (1 - β_ik) n_r),  r ~ U(Q̃_i),     β_ik ~ U(0, 0.5)

    with ``k < n_mix`` mixes ``h`` and ``k < n_query_mix`` query mixes ``h'``.

    Random draws, in this order, from ``generator``: ``p`` and ``r`` indices ``(B, n_mix)`` each,
    ``α`` ``(B, n_mix)``, ``r'`` ``(B, n_query_mix)``, ``β`` ``(B, n_query_mix)``. Pairs with
    ``p = r`` are allowed (as in the paper's sampling). The result is detached: synthetic negatives
    carry no gradient and must not be enqueued.

    Args:
        query: ``(B, d)`` queries.
        queue_features: ``(K, d)`` queue negatives, ``K >= n_hard``.
        n_hard: ``N``, hardest negatives kept per query (``>= 1``).
        n_mix: ``s``, negative–negative mixes per query (``>= 0``).
        n_query_mix: ``s'``, query–negative mixes per query (``>= 0``).
        generator: RNG for the draws (on the query's device); None uses the global RNG.
        normalize: L2-normalise ``query`` and the queue before ranking and mixing.
        check_values: check for NaN/inf (host sync).

    Returns:
        ``(B, n_mix + n_query_mix, d)`` unit-norm synthetic negatives: the ``n_mix`` negative
        mixes first, then the ``n_query_mix`` query mixes.

    Raises:
        ValueError: on bad shapes, NaN/inf, or counts out of range (``n_hard > K``).

    Example:
        >>> q, queue = torch.randn(4, 8), torch.randn(64, 8)
        >>> mochi_negatives(q, queue, n_hard=16, n_mix=8, n_query_mix=4).shape
        torch.Size([4, 12, 8])

    """
    check_embeddings(query, "query", check_finite=check_values)
    check_embeddings(queue_features, "queue_features", check_finite=check_values)
    check_same_dim(query, queue_features, ("query", "queue_features"))
    _check_count(n_hard, "n_hard", minimum=1)
    _check_count(n_mix, "n_mix", minimum=0)
    _check_count(n_query_mix, "n_query_mix", minimum=0)
    if n_hard > queue_features.shape[0]:
        raise ValueError(
            f"n_hard must be <= the number of queue rows ({queue_features.shape[0]}), got {n_hard}"
        )
    batch, dim = query.shape
    device = query.device
    with torch.no_grad():
        zq = prepare(query.detach(), normalize)  # (B, d)
        zn = prepare(queue_features.detach(), normalize).to(zq.dtype)  # (K, d)
        hard_idx = (zq @ zn.T).topk(n_hard, dim=1).indices  # (B, N), per query
        hard = zn[hard_idx]  # (B, N, d): each query's own hard set

        def pick(ids: Tensor) -> Tensor:  # (B, m) ids into each query's hard set -> (B, m, d)
            return torch.take_along_dim(hard, ids[..., None], dim=1)

        p = torch.randint(n_hard, (batch, n_mix), generator=generator, device=device)
        r = torch.randint(n_hard, (batch, n_mix), generator=generator, device=device)
        alpha = torch.rand(batch, n_mix, 1, generator=generator, device=device, dtype=zq.dtype)
        r2 = torch.randint(n_hard, (batch, n_query_mix), generator=generator, device=device)
        beta = 0.5 * torch.rand(
            batch, n_query_mix, 1, generator=generator, device=device, dtype=zq.dtype
        )
        mixed = alpha * pick(p) + (1.0 - alpha) * pick(r)  # (B, s, d)
        query_mixed = beta * zq[:, None, :] + (1.0 - beta) * pick(r2)  # (B, s', d)
        out = torch.cat([mixed, query_mixed], dim=1)  # (B, s + s', d)
        out = F.normalize(out, dim=-1) if out.numel() else out.reshape(batch, 0, dim)
    return out


class MoCoLoss(nn.Module):
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

    Example:
        >>> loss_fn = MoCoLoss(temperature=0.2)
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(32, 8)
        >>> loss_fn(q, k, queue).shape
        torch.Size([])

    """

    def __init__(
        self,
        temperature: float = 0.2,
        *,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_temperature(temperature)
        check_reduction(reduction)
        self.temperature = temperature
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        queue_features: Tensor,
        extra_negatives: Tensor | None = None,
        *,
        check_values: bool = True,
    ) -> Tensor:
        """Loss of queries ``q`` (B, d) vs keys ``k`` (B, d) and queue rows (K, d)."""
        return moco_loss(
            q, k, queue_features,
            temperature=self.temperature, extra_negatives=extra_negatives,
            normalize=self.normalize, reduction=self.reduction, chunk_size=self.chunk_size,
            check_values=check_values,
        )  # fmt: skip


class MoCHiLoss(nn.Module):
    """MoCo loss with MoCHi(N, s, s') synthetic hard negatives (Kalantidis et al., NeurIPS 2020).

    ``forward(q, k, queue_features, generator=None)`` draws :func:`mochi_negatives` for every
    query and passes them to :func:`moco_loss` as ``extra_negatives``. While the queue holds fewer
    than ``n_hard`` rows, all of them form the hard set. The paper's warm-up (no mixing for the
    first epochs) is the caller's choice: use :class:`MoCoLoss` for those epochs.

    Args:
        n_hard: ``N``; default 1024.
        n_mix: ``s``; default 1024.
        n_query_mix: ``s'``; default 128 (the ImageNet-100 configuration MoCHi(1024, 1024, 128);
            the paper also reports (512, 1024, 512) and, on ImageNet-1K, (256, 512, 0) and
            (128, 1024, 512)).
        temperature: ``τ > 0``; default 0.2 (MoCo-v2).
        normalize: L2-normalise inputs.
        reduction: ``'mean' | 'sum' | 'none'``.
        chunk_size: tile edge of the similarity engine.

    Example:
        >>> loss_fn = MoCHiLoss(n_hard=16, n_mix=8, n_query_mix=4)
        >>> q = torch.randn(4, 8, requires_grad=True)
        >>> k, queue = torch.randn(4, 8), torch.randn(64, 8)
        >>> loss_fn(q, k, queue, generator=torch.Generator().manual_seed(0)).backward()

    """

    def __init__(
        self,
        n_hard: int = 1024,
        n_mix: int = 1024,
        n_query_mix: int = 128,
        temperature: float = 0.2,
        *,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        _check_count(n_hard, "n_hard", minimum=1)
        _check_count(n_mix, "n_mix", minimum=0)
        _check_count(n_query_mix, "n_query_mix", minimum=0)
        check_temperature(temperature)
        check_reduction(reduction)
        self.n_hard, self.n_mix, self.n_query_mix = n_hard, n_mix, n_query_mix
        self.temperature = temperature
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        queue_features: Tensor,
        *,
        generator: torch.Generator | None = None,
        check_values: bool = True,
    ) -> Tensor:
        """Loss of queries ``q`` (B, d) vs keys ``k`` (B, d), queue rows (K, d) and mixes."""
        extra = None
        n_queue = queue_features.shape[0] if isinstance(queue_features, Tensor) else 0
        if n_queue > 0 and self.n_mix + self.n_query_mix > 0:
            extra = mochi_negatives(
                q, queue_features, min(self.n_hard, n_queue), self.n_mix, self.n_query_mix,
                generator=generator, normalize=self.normalize, check_values=check_values,
            )  # fmt: skip  # (B, s + s', d)
        return moco_loss(
            q, k, queue_features,
            temperature=self.temperature, extra_negatives=extra, normalize=self.normalize,
            reduction=self.reduction, chunk_size=self.chunk_size, check_values=check_values,
        )  # fmt: skip


def _check_count(value: int, name: str, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
