"""Statistics of positive and negative similarities, and in-batch top-1 accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.metrics._common import check_int
from contrastkit.metrics._pairs import iter_blocks, resolve_pairs


@dataclass(frozen=True)
class SimilarityStats:
    """Summary of the positive and negative similarity distributions.

    Attributes:
        positive_mean: mean similarity of positive pairs.
        positive_std: population standard deviation of positive similarities.
        positive_min: smallest positive similarity.
        positive_max: largest positive similarity.
        num_positive: number of positive pairs.
        negative_mean: mean similarity of negative pairs.
        negative_std: population standard deviation of negative similarities.
        negative_min: smallest negative similarity.
        negative_max: largest negative similarity.
        num_negative: number of negative pairs.
        gap: ``positive_mean - negative_mean``.
        bin_edges: histogram bin edges ``(bins + 1,)``.
        positive_hist: positive counts per bin ``(bins,)`` (values outside the range are clipped
            into the end bins).
        negative_hist: negative counts per bin ``(bins,)``.

    """

    positive_mean: float
    positive_std: float
    positive_min: float
    positive_max: float
    num_positive: int
    negative_mean: float
    negative_std: float
    negative_min: float
    negative_max: float
    num_negative: int
    gap: float
    bin_edges: Tensor
    positive_hist: Tensor
    negative_hist: Tensor

    def summary(self) -> dict[str, float | int]:
        """Return the scalar fields as a JSON-friendly dict (histograms left out)."""
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, Tensor)}


class _Accumulator:
    """Running count, sum, sum of squares, min, max and histogram of a stream of values."""

    def __init__(self, bins: int, lo: float, hi: float) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.vmin = float("inf")
        self.vmax = float("-inf")
        self.lo, self.hi, self.bins = lo, hi, bins
        self.hist = torch.zeros(bins, dtype=torch.int64)

    def add(self, values: Tensor) -> None:
        if values.numel() == 0:
            return
        v = values.double()
        self.count += int(v.numel())
        self.total += float(v.sum())
        self.total_sq += float(v.pow(2).sum())
        self.vmin = min(self.vmin, float(v.min()))
        self.vmax = max(self.vmax, float(v.max()))
        idx = ((v - self.lo) / (self.hi - self.lo) * self.bins).floor().long()
        self.hist += torch.bincount(idx.clamp(0, self.bins - 1), minlength=self.bins)

    def stats(self, name: str) -> tuple[float, float, float, float, int]:
        if self.count == 0:
            raise ValueError(f"there are no {name} pairs: check the labels / pairing")
        mean = self.total / self.count
        var = max(self.total_sq / self.count - mean * mean, 0.0)
        return mean, var**0.5, self.vmin, self.vmax, self.count


def similarity_stats(
    queries: Tensor,
    candidates: Tensor | None = None,
    *,
    query_labels: Tensor | None = None,
    candidate_labels: Tensor | None = None,
    bins: int = 100,
    hist_range: tuple[float, float] = (-1.0, 1.0),
    normalize: bool = True,
    chunk_size: int = 1024,
    check_values: bool = True,
    progress: bool = False,
) -> SimilarityStats:
    """Mean, spread, extremes and histogram of positive vs negative similarities.

    Positives follow the pair layout of :mod:`contrastkit.metrics` (paired rows, shared labels, or
    leave-one-out when ``candidates`` is None). Every other valid pair is a negative. Exact and
    computed in row blocks (memory ``O(chunk_size * m)``); statistics accumulate in float64.

    Args:
        queries: ``(n, d)``.
        candidates: ``(m, d)``, or None for leave-one-out within ``queries`` (needs labels).
        query_labels: ``(n,)`` ids or ``(n, L)`` multi-hot, optional.
        candidate_labels: ``(m,)`` or ``(m, L)``, given together with ``query_labels``.
        bins: number of histogram bins.
        hist_range: histogram range; cosines lie in ``[-1, 1]``.
        normalize: cosine similarity (default) instead of dot product.
        chunk_size: query rows per block.
        check_values: check for NaN/inf (host sync).
        progress: show a tqdm bar on stderr.

    Returns:
        A :class:`SimilarityStats`.

    Raises:
        ValueError: bad inputs, or no positive / no negative pair at all.

    Example:
        >>> a = torch.eye(3)
        >>> s = similarity_stats(a, a)
        >>> s.positive_mean, s.negative_mean
        (1.0, 0.0)

    """
    check_int(bins, "bins")
    lo, hi = hist_range
    if not hi > lo:
        raise ValueError(f"hist_range must be (low, high) with high > low, got {hist_range}")
    pairs = resolve_pairs(
        queries,
        candidates,
        query_labels,
        candidate_labels,
        normalize=normalize,
        check_values=check_values,
    )
    pos_acc, neg_acc = _Accumulator(bins, lo, hi), _Accumulator(bins, lo, hi)
    for _, sims, pos, valid in iter_blocks(pairs, chunk_size, progress, "similarity stats"):
        pos_acc.add(sims[pos])
        neg_acc.add(sims[valid & ~pos])
    pm, ps, pmin, pmax, pn = pos_acc.stats("positive")
    nm, ns, nmin, nmax, nn = neg_acc.stats("negative")
    return SimilarityStats(
        positive_mean=pm,
        positive_std=ps,
        positive_min=pmin,
        positive_max=pmax,
        num_positive=pn,
        negative_mean=nm,
        negative_std=ns,
        negative_min=nmin,
        negative_max=nmax,
        num_negative=nn,
        gap=pm - nm,
        bin_edges=torch.linspace(lo, hi, bins + 1, dtype=torch.float64),
        positive_hist=pos_acc.hist,
        negative_hist=neg_acc.hist,
    )


def top1_accuracy(
    a: Tensor,
    b: Tensor,
    *,
    normalize: bool = True,
    chunk_size: int = 1024,
    check_values: bool = True,
) -> float:
    r"""In-batch top-1 accuracy: how often the positive scores above every in-batch negative.

    The fraction of rows ``i`` with :math:`s_{ii} > s_{ij}` for all ``j != i``.

    ``s = a b^T`` (cosines by default), i.e. how often the InfoNCE logits put the positive first.
    Ties count as errors (a collapsed space scores 0, not ``1/n``). This is the ``a -> b``
    direction; call with ``(b, a)`` for the other one.

    Args:
        a: ``(n, d)``; row ``i`` pairs with ``b[i]``.
        b: ``(n, d)``.
        normalize: cosine similarity (default) instead of dot product.
        chunk_size: rows per block.
        check_values: check for NaN/inf (host sync).

    Returns:
        Accuracy in ``[0, 1]``.

    Raises:
        ValueError: shapes differ, fewer than 2 rows, non-finite values.

    Example:
        >>> top1_accuracy(torch.eye(4), torch.eye(4))
        1.0

    """
    if isinstance(a, Tensor) and a.ndim >= 1 and a.shape[0] < 2:
        raise ValueError(f"a needs at least 2 rows (one negative), got {a.shape[0]}")
    pairs = resolve_pairs(a, b, None, None, normalize=normalize, check_values=check_values)
    correct = 0
    for _, sims, pos, _valid in iter_blocks(pairs, chunk_size):
        positive = sims[pos]  # (r,)
        best_negative = sims.masked_fill(pos, float("-inf")).amax(dim=1)  # (r,)
        correct += int((positive > best_negative).sum())
    return correct / pairs.num_queries
