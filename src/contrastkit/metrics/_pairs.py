"""Which (query, candidate) pairs are positives: the pair specification shared by the metrics.

Three layouts, chosen by the arguments:

* **paired** (``candidates`` given, no labels): row ``i`` of ``queries`` and row ``i`` of
  ``candidates`` are the only positive pair of query ``i`` (two views or two modalities).
* **labelled** (``candidates`` given, both label tensors given): query ``i`` and candidate ``j``
  are positives when they share a label (integer ids, or 0/1 multi-label rows sharing a 1).
* **leave-one-out** (``candidates=None``, ``query_labels`` given): the queries are also the
  candidates, positives share a label, and the query itself is excluded.

The similarity matrix is produced in row blocks of ``chunk_size`` queries, so the extra memory is
``O(chunk_size * m)`` whatever the number of queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit._optional import require
from contrastkit.metrics._common import check_int, prepare


@dataclass(frozen=True)
class Pairs:
    """Validated queries, candidates and the positive relation between them."""

    queries: Tensor  # (n, d)
    candidates: Tensor  # (m, d)
    query_labels: Tensor | None  # (n,) or (n, L)
    candidate_labels: Tensor | None  # (m,) or (m, L)
    exclude_self: bool

    @property
    def num_queries(self) -> int:
        """Number of queries ``n``."""
        return int(self.queries.shape[0])

    @property
    def num_candidates(self) -> int:
        """Number of candidates ``m``."""
        return int(self.candidates.shape[0])


def _check_label_tensor(labels: Tensor, n: int, name: str) -> Tensor:
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) or ({n}, num_labels), got {tuple(labels.shape)}"
        )
    if labels.ndim == 1 and (labels.is_floating_point() or labels.dtype == torch.bool):
        raise ValueError(f"{name} must be integer class ids, got dtype {labels.dtype}")
    labels = labels.detach()
    if labels.ndim == 2:
        labels = labels.float()
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise ValueError(f"{name} as a multi-label matrix must contain only 0 and 1")
    return labels


def resolve_pairs(
    queries: Tensor,
    candidates: Tensor | None,
    query_labels: Tensor | None,
    candidate_labels: Tensor | None,
    *,
    normalize: bool,
    check_values: bool,
) -> Pairs:
    """Validate the inputs of a pairwise metric and decide the positive relation.

    Raises:
        ValueError: inconsistent shapes, labels given for only one side, a paired layout with a
            different number of queries and candidates, or leave-one-out without labels.

    """
    q = prepare(queries, "queries", normalize=normalize, check_values=check_values)
    if candidates is None:
        if query_labels is None:
            raise ValueError(
                "query_labels is required when candidates is None (leave-one-out retrieval "
                "needs labels to define positives)"
            )
        if candidate_labels is not None:
            raise ValueError("candidate_labels must be None when candidates is None")
        if q.shape[0] < 2:
            raise ValueError(f"queries needs at least 2 rows for leave-one-out, got {q.shape[0]}")
        ql = _check_label_tensor(query_labels, q.shape[0], "query_labels")
        return Pairs(q, q, ql, ql, exclude_self=True)
    c = prepare(candidates, "candidates", normalize=normalize, check_values=check_values)
    if q.shape[1] != c.shape[1]:
        raise ValueError(
            "queries and candidates must have the same embedding dimension, "
            f"got {q.shape[1]} and {c.shape[1]}"
        )
    if c.dtype != q.dtype:
        q, c = q.double(), c.double()
    if (query_labels is None) != (candidate_labels is None):
        raise ValueError("query_labels and candidate_labels must be given together (or neither)")
    if query_labels is None or candidate_labels is None:
        if q.shape[0] != c.shape[0]:
            raise ValueError(
                "paired queries and candidates (no labels) must have the same number of rows, "
                f"got {q.shape[0]} and {c.shape[0]}"
            )
        return Pairs(q, c, None, None, exclude_self=False)
    ql = _check_label_tensor(query_labels, q.shape[0], "query_labels")
    cl = _check_label_tensor(candidate_labels, c.shape[0], "candidate_labels")
    if ql.ndim != cl.ndim or (ql.ndim == 2 and ql.shape[1] != cl.shape[1]):
        raise ValueError(
            "query_labels and candidate_labels must have the same layout, "
            f"got shapes {tuple(ql.shape)} and {tuple(cl.shape)}"
        )
    return Pairs(q, c, ql, cl, exclude_self=False)


def positive_mask(pairs: Pairs, start: int, stop: int) -> tuple[Tensor, Tensor]:
    """Positive and valid masks ``(stop - start, m)`` for a block of query rows.

    ``valid`` is False on excluded entries (the query itself in leave-one-out); ``positive`` is
    always a subset of ``valid``.
    """
    m = pairs.num_candidates
    device = pairs.queries.device
    rows = torch.arange(start, stop, device=device)
    cols = torch.arange(m, device=device)
    if pairs.query_labels is None or pairs.candidate_labels is None:
        pos = rows[:, None] == cols[None, :]
    elif pairs.query_labels.ndim == 1:
        pos = pairs.query_labels[start:stop, None] == pairs.candidate_labels[None, :]
    else:
        pos = (pairs.query_labels[start:stop] @ pairs.candidate_labels.T) > 0
    valid = torch.ones_like(pos)
    if pairs.exclude_self:
        valid = rows[:, None] != cols[None, :]
        pos = pos & valid
    return pos, valid


def iter_blocks(
    pairs: Pairs, chunk_size: int, progress: bool = False, desc: str = "similarities"
) -> Iterator[tuple[int, Tensor, Tensor, Tensor]]:
    """Yield ``(start, sims, positive, valid)`` for consecutive blocks of query rows.

    ``sims`` is ``(r, m)`` cosine (or dot-product) similarities; ``positive``/``valid`` are the
    masks of :func:`positive_mask`.
    """
    check_int(chunk_size, "chunk_size")
    n = pairs.num_queries
    starts = range(0, n, chunk_size)
    iterator: Iterator[int] = iter(starts)
    if progress:
        tqdm = require("tqdm.auto", "analyze", "progress=True").tqdm
        iterator = iter(tqdm(starts, desc=desc, unit="block", leave=False))
    for start in iterator:
        stop = min(start + chunk_size, n)
        sims = pairs.queries[start:stop] @ pairs.candidates.T  # (r, m)
        pos, valid = positive_mask(pairs, start, stop)
        yield start, sims, pos, valid
        del sims, pos, valid  # do not hold this block while the next one is computed
