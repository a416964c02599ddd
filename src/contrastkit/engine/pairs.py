"""Which (anchor, candidate) pairs count, given compactly and expanded one tile at a time.

A loss never builds an ``n × m`` mask. It describes pairs with ``O(n + m)`` inputs — ids, labels,
or the embeddings of a frozen modality — and the engine asks for the ``(rows, cols)`` tile it is
working on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class TilePairs:
    """Masks and weights of one tile of the similarity matrix.

    Attributes:
        exclude: ``(r, c)`` bool, True where the pair is left out of the log-sum-exp (and gets no
            weight), or None when every pair counts.
        weight: ``(r, c)`` float weights ``w_ij`` of the weighted logit sums ``Σ_j w_ij s_ij``
            (e.g. 1 on label positives, soft CWCL weights), or None.
        log_weight: ``(r, c)`` float added to the logits inside the log-sum-exp only, i.e. the
            denominator becomes ``Σ_j exp(log_weight_ij) · exp(s_ij)``; or None.
    """

    exclude: Tensor | None = None
    weight: Tensor | None = None
    log_weight: Tensor | None = None


class PairRule(Protocol):
    """Anything that can describe the pairs of a tile; :class:`Pairs` is the built-in rule."""

    @property
    def has_weights(self) -> bool:
        """Whether :meth:`tile` returns weights (so the engine computes weighted sums)."""
        ...

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Return the masks and weights of the tile ``S[rows, cols]``."""
        ...


def shifted_cosine(cosine: Tensor) -> Tensor:
    """CWCL's default weight ``(cos + 1) / 2``, mapping cosines to ``[0, 1]``."""
    return (cosine + 1.0) * 0.5


@dataclass(frozen=True)
class ExpCosine:
    """A sharper weight ``exp((cos − 1) / temperature)``: 1 on identical keys, ~0 far away.

    For frozen encoders whose cosines are all high (sentence encoders: 0.3–0.7 between
    unrelated texts), ``(cos + 1) / 2`` gives nearly uniform soft labels; this kernel keeps the
    targets peaked. ``temperature → ∞`` flattens it, ``temperature → 0`` leaves only
    identical keys (hard positives).
    """

    temperature: float

    def __call__(self, cosine: Tensor) -> Tensor:
        """Weights of a tile of cosines."""
        return torch.exp((cosine - 1.0) / self.temperature)


@dataclass(frozen=True)
class Pairs:
    """Compact description of excluded pairs and positive weights.

    Attributes:
        row_ids: ``(n,)`` ids of the anchors. A pair ``(i, j)`` is excluded from the
            log-sum-exp when ``row_ids[i] == col_ids[j]`` (self-pairs, declared duplicates).
        col_ids: ``(m,)`` ids of the candidates; required with ``row_ids``.
        row_labels: ``(n,)`` int class ids or ``(n, L)`` 0/1 multi-label rows. Pairs that share a
            label get weight 1 (multi-label: share at least one label). Excluded pairs get 0.
        col_labels: ``(m,)`` or ``(m, L)`` labels of the candidates; required with ``row_labels``.
        row_keys: ``(n, k)`` L2-normalised embeddings of a frozen modality; the pair weight is
            ``key_weight(row_keys[i] · col_keys[j])`` (CWCL). Multiplies label weights if both.
        col_keys: ``(m, k)`` keys of the candidates; required with ``row_keys``.
        key_weight: maps a tile of key cosines to weights; default ``(cos + 1) / 2``.
    """

    row_ids: Tensor | None = None
    col_ids: Tensor | None = None
    row_labels: Tensor | None = None
    col_labels: Tensor | None = None
    row_keys: Tensor | None = None
    col_keys: Tensor | None = None
    key_weight: Callable[[Tensor], Tensor] = shifted_cosine

    def __post_init__(self) -> None:
        for first, second in (("row_ids", "col_ids"), ("row_labels", "col_labels")):
            if (getattr(self, first) is None) != (getattr(self, second) is None):
                raise ValueError(f"Pairs: {first} and {second} must be given together")
        if (self.row_keys is None) != (self.col_keys is None):
            raise ValueError("Pairs: row_keys and col_keys must be given together")

    @property
    def has_weights(self) -> bool:
        """Whether pairs carry weights (labels or keys were given)."""
        return self.row_labels is not None or self.row_keys is not None

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Expand the compact description for the tile ``S[rows, cols]``."""
        exclude = None
        if self.row_ids is not None and self.col_ids is not None:
            exclude = self.row_ids[rows, None] == self.col_ids[None, cols]
        weight = None
        if self.row_labels is not None and self.col_labels is not None:
            weight = _shared_label(self.row_labels[rows], self.col_labels[cols])
        if self.row_keys is not None and self.col_keys is not None:
            key_w = self.key_weight(_full(self.row_keys[rows]) @ _full(self.col_keys[cols]).T)
            weight = key_w if weight is None else weight * key_w
        if weight is not None and exclude is not None:
            weight = weight.masked_fill(exclude, 0.0)
        return TilePairs(exclude=exclude, weight=weight)


def _full(x: Tensor) -> Tensor:
    """Half-precision keys are compared in fp32; fp32/fp64 keys keep their precision."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _shared_label(row_labels: Tensor, col_labels: Tensor) -> Tensor:
    """1.0 where a row and a column share a label (class id equality or multi-label overlap)."""
    if row_labels.ndim == 1:
        return (row_labels[:, None] == col_labels[None, :]).float()
    overlap = row_labels.float() @ col_labels.float().T
    return (overlap > 0).float()


def apply_tile(logits: Tensor, tile: TilePairs) -> Tensor:
    """Logits as seen by the log-sum-exp: log-weights added, excluded pairs at ``-inf``."""
    if tile.log_weight is not None:
        logits = logits + tile.log_weight
    if tile.exclude is not None:
        logits = logits.masked_fill(tile.exclude, float("-inf"))
    return logits


def ids_excluding_self(n: int, device: torch.device) -> Tensor:
    """Ids ``0..n-1``: with themselves as column ids they exclude exactly the diagonal."""
    return torch.arange(n, device=device)
