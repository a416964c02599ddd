r"""ROC AUC of positive versus negative similarities (Mann-Whitney U), per query and global.

.. math:: \mathrm{AUC} = \frac{1}{|P||N|} \sum_{p \in P} \sum_{n \in N}
          \left(1\{s_p > s_n\} + \tfrac12 1\{s_p = s_n\}\right)

Ties count one half, as in ``sklearn.metrics.roc_auc_score``. Computed exactly without sorting
the ``n x m`` score matrix: each negative is located among the sorted positives with a binary
search, block by block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.metrics._pairs import Pairs, iter_blocks, resolve_pairs


@dataclass(frozen=True)
class AUCResult:
    """ROC AUC of positives vs negatives.

    Attributes:
        global_auc: AUC of all positive pairs against all negative pairs, pooled over queries.
        mean_query_auc: mean over queries of the per-query AUC.
        per_query: ``(n,)`` float64 per-query AUC (NaN only for queries skipped with
            ``skip_undefined=True``).
        num_skipped: number of queries without a positive or without a negative that were
            skipped.

    """

    global_auc: float
    mean_query_auc: float
    per_query: Tensor
    num_skipped: int


def _wrong_order_counts(sorted_pos: Tensor, neg: Tensor) -> Tensor:
    """Sum over negatives of ``#{p < n} + 0.5 #{p == n}`` per row (float64)."""
    left = torch.searchsorted(sorted_pos, neg, side="left")
    right = torch.searchsorted(sorted_pos, neg, side="right")
    return left.double().sum(-1) + 0.5 * (right - left).double().sum(-1)


def _global_auc(pairs: Pairs, chunk_size: int) -> float:
    positives = [sims[pos] for _, sims, pos, _ in iter_blocks(pairs, chunk_size)]
    pos_sorted = torch.cat(positives).contiguous().sort().values  # (P,)
    wrong, num_neg = 0.0, 0
    for _, sims, pos, valid in iter_blocks(pairs, chunk_size):
        neg = sims[valid & ~pos].contiguous()
        num_neg += int(neg.numel())
        if neg.numel():
            wrong += float(_wrong_order_counts(pos_sorted, neg))
    if pos_sorted.numel() == 0 or num_neg == 0:
        raise ValueError("global AUC needs at least one positive and one negative pair")
    return 1.0 - wrong / (pos_sorted.numel() * num_neg)


def auc(
    queries: Tensor,
    candidates: Tensor | None = None,
    *,
    query_labels: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    normalize: bool = True,
    chunk_size: int = 512,
    skip_undefined: bool = False,
    check_values: bool = True,
    progress: bool = False,
) -> AUCResult:
    """Per-query and global ROC AUC of positive vs negative similarities.

    Pair layouts as in :mod:`contrastkit.metrics` (paired rows, shared labels, or leave-one-out
    with ``candidates=None``). The per-query AUC of query ``i`` ranks its positives against its
    negatives; the global AUC pools every positive and every negative pair of every query.
    Exact; memory ``O(chunk_size * m)`` plus all positive scores for the global AUC (``n`` in the
    paired layout). Two passes over the similarity blocks.

    Args:
        queries: ``(n, d)``.
        candidates: ``(m, d)``, or None for leave-one-out (needs ``query_labels``).
        query_labels: ``(n,)`` ids or ``(n, L)`` multi-hot, optional.
        candidate_labels: ``(m,)`` or ``(m, L)``, with ``query_labels``.
        normalize: cosine similarity (default) instead of dot product.
        chunk_size: query rows per block.
        skip_undefined: skip (NaN per-query value, left out of the mean) queries with no positive
            or no negative instead of raising.
        check_values: check for NaN/inf (host sync).
        progress: tqdm bar on stderr.

    Returns:
        An :class:`AUCResult`.

    Raises:
        ValueError: bad inputs, or a query without positive/negative (unless ``skip_undefined``).

    Example:
        >>> r = auc(torch.eye(3), torch.eye(3))
        >>> r.global_auc, r.mean_query_auc
        (1.0, 1.0)

    """
    pairs = resolve_pairs(
        queries,
        candidates,
        query_labels,
        candidate_labels,
        normalize=normalize,
        check_values=check_values,
    )
    per_query = torch.empty(pairs.num_queries, dtype=torch.float64)
    for start, sims, pos, valid in iter_blocks(pairs, chunk_size, progress, "AUC"):
        neg_mask = valid & ~pos
        n_pos = pos.sum(1)  # (r,)
        n_neg = neg_mask.sum(1)  # (r,)
        undefined = (n_pos == 0) | (n_neg == 0)
        if bool(undefined.any()) and not skip_undefined:
            row = start + int(torch.nonzero(undefined)[0, 0])
            raise ValueError(
                f"query {row} has no positive or no negative candidate, so its AUC is undefined "
                "(pass skip_undefined=True to skip such queries)"
            )
        k = max(int(n_pos.max()), 1)
        # positives sorted ascending, padded with +inf (never counted below a finite negative)
        sorted_pos = sims.masked_fill(~pos, float("inf")).topk(k, dim=1, largest=False).values
        sorted_pos = sorted_pos.sort(dim=1).values.contiguous()  # (r, k)
        neg = sims.masked_fill(~neg_mask, float("-inf")).contiguous()  # (r, m)
        wrong = _wrong_order_counts(sorted_pos, neg)  # (r,)
        denom = (n_pos * n_neg).double()
        value = 1.0 - wrong / denom.clamp_min(1.0)
        per_query[start : start + sims.shape[0]] = value.masked_fill(undefined, float("nan"))
    defined = ~torch.isnan(per_query)
    if not bool(defined.any()):
        raise ValueError("no query has both a positive and a negative candidate")
    return AUCResult(
        global_auc=_global_auc(pairs, chunk_size),
        mean_query_auc=float(per_query[defined].mean()),
        per_query=per_query,
        num_skipped=int((~defined).sum()),
    )
