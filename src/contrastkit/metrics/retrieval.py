r"""Exact retrieval metrics computed in blocks of queries, any number of positives per query.

recall@k, precision@k, hit rate@k, nDCG@k, MRR and MAP@R.

For query ``i`` with ``R_i`` positives, candidates are ranked by decreasing similarity. **Ties**
between a positive and a negative are broken against the query (the negative ranks first), so a
collapsed embedding gets the worst score rather than a lucky one; ties among positives or among
negatives do not matter for binary relevance.

Only the top ``K = max(max(ks), R_i)`` of each row are needed for the cut-off metrics, and MRR
needs one count per row, so nothing is sorted in full: two ``topk`` calls and a binary search per
row block. The extra memory is ``O(chunk_size * m)``.

Definitions (``rank_t``: rank of the ``t``-th best positive; ``hits_k = #{t: rank_t <= k}``):

* recall@k = ``hits_k / R_i``;   precision@k = ``hits_k / k``;   hit rate@k = ``1{hits_k > 0}``
  (what metric-learning papers often call "Recall@k"; equal to recall@k when ``R_i = 1``).
* nDCG@k = ``sum_{t: rank_t <= k} 1/log2(rank_t + 1)`` divided by
  ``sum_{t=1}^{min(R_i, k)} 1/log2(t + 1)`` (binary gains, as ``sklearn.metrics.ndcg_score``).
* MRR = ``1 / rank_1``.
* MAP@R (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020) =
  ``(1/R_i) sum_{t: rank_t <= R_i} t / rank_t``.

Every metric is averaged over queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from contrastkit.metrics._common import check_int
from contrastkit.metrics._pairs import iter_blocks, resolve_pairs


@dataclass(frozen=True)
class RetrievalResult:
    """Query-averaged retrieval metrics.

    Attributes:
        recall: ``{k: recall@k}``.
        precision: ``{k: precision@k}``.
        hit_rate: ``{k: hit rate@k}``.
        ndcg: ``{k: nDCG@k}``.
        mrr: mean reciprocal rank of the first positive.
        map_at_r: mean average precision at R.
        num_queries: queries averaged over.
        num_skipped: queries without positives that were skipped.

    """

    recall: dict[int, float] = field(default_factory=dict)
    precision: dict[int, float] = field(default_factory=dict)
    hit_rate: dict[int, float] = field(default_factory=dict)
    ndcg: dict[int, float] = field(default_factory=dict)
    mrr: float = 0.0
    map_at_r: float = 0.0
    num_queries: int = 0
    num_skipped: int = 0

    def as_dict(self) -> dict[str, float]:
        """Flat ``{"recall@1": ..., "mrr": ..., "map@r": ...}`` dict for reports."""
        out: dict[str, float] = {}
        for name in ("recall", "precision", "hit_rate", "ndcg"):
            for k, v in getattr(self, name).items():
                out[f"{name}@{k}"] = v
        out["mrr"] = self.mrr
        out["map@r"] = self.map_at_r
        return out


def retrieval_metrics(
    queries: Tensor,
    candidates: Tensor | None = None,
    *,
    query_labels: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10),
    normalize: bool = True,
    chunk_size: int = 128,
    skip_queries_without_positives: bool = False,
    check_values: bool = True,
    progress: bool = False,
) -> RetrievalResult:
    """Exact recall@k, precision@k, hit rate@k, nDCG@k, MRR and MAP@R, in blocks of queries.

    Pair layouts as in :mod:`contrastkit.metrics`: paired rows (one positive each, e.g.
    image->text), shared labels (any number of positives), or leave-one-out within ``queries``
    (``candidates=None``, the query itself is not a candidate). See the module docstring for the
    formulas and the tie rule. 100k x 100k at ``d=64`` runs in a few hundred MiB with the default
    ``chunk_size`` (see ``benchmarks/retrieval_memory.py``).

    Args:
        queries: ``(n, d)``.
        candidates: ``(m, d)``, or None for leave-one-out (needs ``query_labels``).
        query_labels: ``(n,)`` ids or ``(n, L)`` multi-hot, optional.
        candidate_labels: ``(m,)`` or ``(m, L)``, with ``query_labels``.
        ks: cut-offs, each ``1 <= k <=`` number of candidates per query.
        normalize: cosine similarity (default) instead of dot product.
        chunk_size: queries per block (live memory ``~ 10 * chunk_size * m`` bytes).
        skip_queries_without_positives: leave such queries out of the averages instead of
            raising.
        check_values: check for NaN/inf (host sync).
        progress: tqdm bar on stderr.

    Returns:
        A :class:`RetrievalResult`.

    Raises:
        ValueError: bad inputs, a bad ``k``, or a query without positive (unless skipped).

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> r = retrieval_metrics(x, x, ks=(1,))
        >>> r.recall[1], r.mrr
        (1.0, 1.0)

    """
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must contain at least one cut-off")
    for k in ks:
        check_int(k, "ks")
    pairs = resolve_pairs(
        queries,
        candidates,
        query_labels,
        candidate_labels,
        normalize=normalize,
        check_values=check_values,
    )
    per_query = pairs.num_candidates - (1 if pairs.exclude_self else 0)
    if max(ks) > per_query:
        raise ValueError(f"ks: k={max(ks)} exceeds the {per_query} candidates of each query")
    kmax = max(ks)
    sums = {name: dict.fromkeys(ks, 0.0) for name in ("recall", "precision", "hit_rate", "ndcg")}
    mrr_sum = map_sum = 0.0
    used = skipped = 0
    discount = 1.0 / torch.log2(torch.arange(2, per_query + 2, dtype=torch.float64))  # (m',)
    ideal = discount.cumsum(0)  # ideal[j-1] = IDCG with j relevant items in the top
    for start, sims, pos, valid in iter_blocks(pairs, chunk_size, progress, "retrieval"):
        neg_mask = valid & ~pos
        n_pos = pos.sum(1)  # (r,)
        empty = n_pos == 0
        if bool(empty.any()):
            if not skip_queries_without_positives:
                row = start + int(torch.nonzero(empty)[0, 0])
                raise ValueError(
                    f"query {row} has no positive candidate (pass "
                    "skip_queries_without_positives=True to leave such queries out)"
                )
            keep = ~empty
            sims, pos, neg_mask, n_pos = sims[keep], pos[keep], neg_mask[keep], n_pos[keep]
            skipped += int(empty.sum())
            if sims.shape[0] == 0:
                continue
        r = sims.shape[0]
        max_pos = int(n_pos.max())
        k_needed = max(kmax, max_pos)
        k_pos = min(k_needed, max_pos)
        k_neg = min(k_needed, int(neg_mask.sum(1).max()))
        if pairs.query_labels is None:  # paired layout: the positive is the diagonal entry
            top_pos = sims.gather(1, (torch.arange(r) + start)[:, None])  # (r, 1)
        else:
            top_pos = sims.masked_fill(~pos, -math.inf).topk(k_pos, dim=1).values  # (r, k_pos)
        del pos
        neg_scores = sims.masked_fill_(~neg_mask, -math.inf)  # (r, m), in place: sims is done
        del neg_mask
        # reciprocal rank: 1 / (1 + #negatives scoring >= the best positive)
        first = (neg_scores >= top_pos[:, :1]).sum(1).double()  # (r,)
        mrr_sum += float((1.0 / (1.0 + first)).sum())
        if k_neg > 0:
            top_neg = neg_scores.topk(k_neg, dim=1).values.flip(1).contiguous()  # ascending
            below = torch.searchsorted(top_neg, top_pos.contiguous(), side="left")
            ahead = k_neg - below  # (r, k_pos): negatives >= each positive (capped at k_neg)
        else:
            ahead = torch.zeros_like(top_pos, dtype=torch.long)
        t = torch.arange(1, k_pos + 1, dtype=torch.float64)  # (k_pos,)
        rank = t + ahead.double()  # (r, k_pos)
        real = t[None, :] <= n_pos[:, None]  # (r, k_pos): not padding
        npos = n_pos.double()
        for k in ks:
            hit = real & (rank <= k)
            hits = hit.sum(1).double()
            sums["recall"][k] += float((hits / npos).sum())
            sums["precision"][k] += float(hits.sum() / k)
            sums["hit_rate"][k] += float((hits > 0).sum())
            dcg = torch.where(hit, 1.0 / torch.log2(rank + 1.0), 0.0).sum(1)
            idcg = ideal[(n_pos.clamp_max(k) - 1).long()]
            sums["ndcg"][k] += float((dcg / idcg).sum())
        in_r = real & (rank <= npos[:, None])
        ap = torch.where(in_r, t[None, :] / rank, 0.0).sum(1) / npos
        map_sum += float(ap.sum())
        used += r
        del sims, valid, neg_scores  # free this block before the next one is computed
    if used == 0:
        raise ValueError("no query has a positive candidate")
    return RetrievalResult(
        recall={k: v / used for k, v in sums["recall"].items()},
        precision={k: v / used for k, v in sums["precision"].items()},
        hit_rate={k: v / used for k, v in sums["hit_rate"].items()},
        ndcg={k: v / used for k, v in sums["ndcg"].items()},
        mrr=mrr_sum / used,
        map_at_r=map_sum / used,
        num_queries=used,
        num_skipped=skipped,
    )
