"""Wang & Liu's explicit hard contrastive loss: each anchor keeps only its hardest negatives.

Reference:
    - [0] Wang & Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021, Eq. 8-9
      (hard contrastive loss) and Eq. 3 restricted to the hard set ("HardSimple"). No official
      code; implemented from the equations.

Memory: the hard set is selected by a running top-K per row, merged across column tiles
(``O(n·K)`` indices, no ``n × m`` matrix), and the loss then runs on the similarity engine with
a pair rule that keeps only those ``K`` columns per row — ``O((n + m)·d + n·K + tile²)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_chunk_size,
    check_count,
    check_positive,
    check_reduction,
    check_same_dim,
    check_tensor,
    reduce,
    validate_pair,
)
from contrastkit.engine import TilePairs, pairwise_lse, safe_logaddexp
from contrastkit.engine.lse import DENSE_MAX_PAIRS, block_shape, default_tile
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature

# Default quantile of the in-batch negatives kept per anchor (see hard_contrastive_loss).
DEFAULT_ALPHA = 0.5
# The paper's CIFAR α, a quantile of a 50 000-entry memory bank (K ≈ 4 095).
PAPER_ALPHA = 0.0819


@dataclass(frozen=True)
class TopKPairs:
    """Pair rule that counts, for each anchor row, only the candidate columns listed in ``keep``.

    Attributes:
        keep: ``(n, K)`` int64 column indices kept for each row (all other pairs are excluded).
        num_candidates: ``m``, the number of candidate columns.
        weighted: also return weight 1 on kept pairs (so the engine sums their logits).
    """

    keep: Tensor
    num_candidates: int
    weighted: bool = False

    @property
    def has_weights(self) -> bool:
        """Whether kept pairs carry weight 1 (used by :func:`hard_simple_loss`)."""
        return self.weighted

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Mask of the tile ``S[rows, cols]``: excluded unless the column is in ``keep[row]``."""
        idx = self.keep[rows]  # (r, K)
        start = 0 if cols.start is None else cols.start
        stop = self.num_candidates if cols.stop is None else cols.stop
        inside = (idx >= start) & (idx < stop)  # (r, K)
        local = (idx - start).clamp(0, stop - start - 1)
        # scatter_add, not scatter_: clamped outside entries may share a slot with a kept one.
        counts = torch.zeros(idx.shape[0], stop - start, dtype=torch.int32, device=idx.device)
        counts.scatter_add_(1, local, inside.to(torch.int32))
        kept = counts > 0  # (r, c)
        return TilePairs(exclude=~kept, weight=kept.float() if self.weighted else None)


@torch.no_grad()
def hardest_negatives(
    anchors: Tensor, candidates: Tensor, k: int, *, chunk_size: int | None = None
) -> Tensor:
    """Indices of the ``k`` largest ``<anchors_i, candidates_j>`` per row, ``j ≠ i``.

    Column ``i`` is anchor ``i``'s positive and is never selected. Computed in blocks of full
    rows of ``~tile²`` logits (at least one row; memory ``O(n·k + max(tile², m))``) when
    ``chunk_size`` is given or ``n·m`` is large: one top-K per row, as fast as the dense one
    (a running top-K merged over column tiles cost 4× more at B = 4096, K = 2048). Exact ties
    may be broken differently by the dense and blocked paths.

    Args:
        anchors: ``(n, d)``.
        candidates: ``(m, d)``, ``m > n`` or ``m == n``; column ``i`` is row ``i``'s positive.
        k: number of negatives to keep, ``1 ≤ k ≤ m - 1``.
        chunk_size: tile edge (blocks of ``chunk_size²`` logits); None: dense for small ``n·m``.

    Returns:
        ``(n, k)`` int64 column indices (no gradient).
    """
    n, m = anchors.shape[0], candidates.shape[0]
    dense = chunk_size is None and n * m <= DENSE_MAX_PAIRS
    tile = max(n, m) if dense else (chunk_size or default_tile(anchors.device))
    # Blocks of full rows (~tile² logits each, the engine's kept blocks): one top-K per row.
    rows, _ = block_shape(n, m, tile, keep=True)
    out = torch.empty(n, k, dtype=torch.long, device=anchors.device)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        logits = anchors[r0:r1] @ candidates.T  # (r, m)
        diag = torch.arange(r1 - r0, device=anchors.device)
        logits[diag, diag + r0] = float("-inf")  # the positive is not a negative
        out[r0:r1] = logits.topk(k, dim=1, sorted=False).indices
    return out


def num_hard_negatives(alpha: float, num_negatives: int) -> int:
    """``K = ceil(α · #negatives)`` (at least 1), the size of the upper-α quantile."""
    return max(1, math.ceil(alpha * num_negatives))


def _check_alpha(alpha: float) -> None:
    check_positive(alpha, "alpha")
    if alpha > 1:
        raise ValueError(f"alpha must be in (0, 1] (a quantile of the negatives), got {alpha}")


def _check_options(alpha: float, num_hard: int | None) -> None:
    if num_hard is None:
        _check_alpha(alpha)
    else:
        check_count(num_hard, "num_hard")


def _prepare_inputs(
    a: Tensor,
    b: Tensor,
    negatives: Tensor | None,
    alpha: float,
    num_hard: int | None,
    normalize: bool,
    check_values: bool,
    temperature: float | Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, int, ValueChecks]:
    if negatives is not None:
        check_tensor(negatives, "negatives", min_rows=0)
        if negatives.shape[0] == 0:
            negatives = None  # K = 0: no extra negatives
    checks = validate_pair(
        a,
        b,
        min_rows=1 if negatives is not None else 2,
        normalize=normalize,
        check_values=check_values,
        temperature=temperature,
        extra=[] if negatives is None else [("negatives", negatives)],
    )
    if negatives is not None:
        check_same_dim(a, negatives, ("a", "negatives"))
    _check_options(alpha, num_hard)
    za, zb = prepare(a, normalize, checks), prepare(b, normalize, checks)  # (B, d)
    candidates = zb if negatives is None else torch.cat([zb, prepare(negatives, normalize)])
    num_negatives = candidates.shape[0] - 1  # every other column
    k = num_hard if num_hard is not None else num_hard_negatives(alpha, num_negatives)
    if k > num_negatives:
        raise ValueError(
            f"num_hard must be <= the number of negatives per anchor ({num_negatives}), got {k}"
        )
    return za, zb, candidates, k, checks


@full_precision
def hard_contrastive_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.7,
    alpha: float = DEFAULT_ALPHA,
    num_hard: int | None = None,
    negatives: Tensor | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """Hard contrastive loss: InfoNCE restricted to each anchor's top-K negatives.

    With ``s_ij = <a_i, c_j> / τ`` over the candidates ``c = [b; negatives]`` (column ``i`` is
    the positive) and ``H(i)`` the ``K = ceil(α · (m - 1))`` negatives of largest similarity
    (the upper-α quantile of anchor ``i``'s negatives, Wang & Liu Eq. 8-9)::

        ℓ_i = -log( exp(s_ii) / (exp(s_ii) + Σ_{k ∈ H(i)} exp(s_ik)) )

    The positive **is** in the denominator. Negatives outside ``H(i)`` get zero gradient (the
    selection itself is not differentiated). ``alpha = 1`` is :func:`contrastkit.info_nce`.
    Reduction: mean over anchors; ``'none'`` returns ``(B,)``.

    Defaults: ``τ = 0.7`` (the paper's best hard-loss temperature on CIFAR-10) and
    ``α = 0.5``, **not** the paper's ``α = 0.0819`` (:data:`PAPER_ALPHA`). The paper's α is a
    quantile of a memory bank of the whole training set (50 000 CIFAR images, so
    ``K ≈ 4 095`` hard negatives per anchor, which receive no gradient). Applied to in-batch
    negatives it keeps ``K = 21`` of 255 at batch 256, and the loss then collapses every
    embedding to one point: its collapse value ``ln(K + 1)`` (all embeddings equal) is *lower*
    than the loss of a non-collapsed encoder, because an anchor's 21 nearest in-batch neighbours
    (mostly the same class) are about as similar to it as its own second view. Measured on
    Fashion-MNIST (SimCLR recipe, 2 epochs of 5 120 images, τ 0.7 and 0.3): ``α ≤ 0.25``
    collapses (loss at ``ln(K + 1)``, projection uniformity -0.03 to -0.37) at batch 64, 256
    and 512; ``α = 0.5`` trains at batch 64 and 256 (uniformity ≈ -2.6, kNN accuracy 0.72 vs
    0.64 collapsed). On the projections of an encoder trained with InfoNCE, the hard loss at
    ``K = 21`` is 0.3 (τ 0.7) to 0.8 (τ 0.3) *above* ``ln 22``, at ``K = 128`` 0.1-0.2 below
    ``ln 129``. See ``benchmarks/results/study_hard_negatives.md``. With a large memory bank
    (``negatives``), a small α as in the paper may work; this was not measured.

    Memory: the top-K is a running selection merged across column tiles (``O(B·K)``) and the
    loss runs on the similarity engine with :class:`TopKPairs` — no ``B × m`` matrix on the
    tiled path.

    Args:
        a: ``(B, d)`` anchors.
        b: ``(B, d)`` positives, row-aligned; the other rows are negatives.
        temperature: ``τ`` > 0, float or scalar tensor.
        alpha: quantile ``α ∈ (0, 1]`` of negatives kept per anchor.
        num_hard: ``K`` directly (overrides ``alpha``).
        negatives: extra shared negatives ``(Q, d)`` (e.g. a memory bank), ranked together with
            the in-batch ones.
        normalize: L2-normalise all embeddings first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (a host sync).

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``).

    Raises:
        ValueError: on mismatched shapes, B < 2 without extra negatives, non-finite values,
            τ ≤ 0, α outside ``(0, 1]``, ``num_hard`` larger than the number of negatives, or a
            bad reduction.

    Peers: none implement it (no official code); tested against a float64 loop reference and
    against :func:`contrastkit.info_nce` at ``α = 1``.

    Examples:
        >>> a, b = torch.randn(16, 8), torch.randn(16, 8)
        >>> loss = hard_contrastive_loss(a, b, num_hard=4)
    """
    check_reduction(reduction)
    check_chunk_size(chunk_size)
    za, zb, candidates, k, checks = _prepare_inputs(
        a, b, negatives, alpha, num_hard, normalize, check_values, temperature
    )
    queries = scale_by_temperature(za, temperature)  # (B, d)
    positive = (queries * zb).sum(-1)  # (B,) s_ii
    keep = hardest_negatives(queries.detach(), candidates.detach(), k, chunk_size=chunk_size)
    rule = TopKPairs(keep, candidates.shape[0])
    stats = pairwise_lse(
        queries, candidates, rule, chunk_size=chunk_size, memory_budget=memory_budget
    ).rows
    assert stats is not None
    losses = safe_logaddexp(stats.lse, positive) - positive  # (B,)
    return checks.verify(reduce(losses, reduction))


@full_precision
def hard_simple_loss(
    a: Tensor,
    b: Tensor,
    *,
    lam: float = 1.0,
    alpha: float = 0.0819,
    num_hard: int | None = None,
    negatives: Tensor | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """HardSimple: the large-temperature limit ``L_simple`` restricted to the hard negatives.

    With cosine similarities ``s_ij = <a_i, c_j>`` (no temperature) and ``H(i)`` as in
    :func:`hard_contrastive_loss`::

        ℓ_i = -s_ii + λ · Σ_{j ∈ H(i)} s_ij

    There is no denominator. ``λ = 1`` by default (the paper's Eq. 3 leaves ``λ`` free).
    Reduction: mean over anchors. The sum over ``H(i)`` is the engine's weighted logit sum
    (weight 1 on kept pairs), so it is tiled like the hard contrastive loss.

    Args:
        a: ``(B, d)`` anchors.
        b: ``(B, d)`` positives, row-aligned.
        lam: weight ``λ`` > 0 of the negative term.
        alpha: quantile ``α ∈ (0, 1]`` of negatives kept per anchor.
        num_hard: ``K`` directly (overrides ``alpha``).
        negatives: extra shared negatives ``(Q, d)``.
        normalize: L2-normalise first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (a host sync).

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``).

    Raises:
        ValueError: as :func:`hard_contrastive_loss`, and for ``lam`` ≤ 0.

    Examples:
        >>> loss = hard_simple_loss(torch.randn(16, 8), torch.randn(16, 8), num_hard=4)
    """
    check_reduction(reduction)
    check_chunk_size(chunk_size)
    check_positive(lam, "lam")
    za, zb, candidates, k, checks = _prepare_inputs(
        a, b, negatives, alpha, num_hard, normalize, check_values, None
    )
    positive = (za * zb).sum(-1)  # (B,)
    keep = hardest_negatives(za.detach(), candidates.detach(), k, chunk_size=chunk_size)
    rule = TopKPairs(keep, candidates.shape[0], weighted=True)
    stats = pairwise_lse(
        za, candidates, rule, chunk_size=chunk_size, memory_budget=memory_budget
    ).rows
    assert stats is not None and stats.weighted_sum is not None
    losses = -positive + lam * stats.weighted_sum  # (B,)
    return checks.verify(reduce(losses, reduction))


class HardContrastiveLoss(LossModule):
    """Module wrapper of :func:`hard_contrastive_loss` (Wang & Liu's explicit hard negatives).

    Inputs: ``forward(a, b, negatives=None)`` with paired ``(B, d)`` rows and optional shared
    ``(Q, d)`` negatives (a memory bank). Use it instead of :class:`InfoNCELoss` to make the
    loss focus on the nearest negatives explicitly (at a higher temperature than InfoNCE would
    use), which the paper finds keeps uniformity while tolerating semantically close samples.

    Examples:
        >>> loss_fn = HardContrastiveLoss(temperature=0.7, num_hard=4)
        >>> loss = loss_fn(torch.randn(16, 8), torch.randn(16, 8))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.7,
        alpha: float = DEFAULT_ALPHA,
        num_hard: int | None = None,
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
        _check_options(alpha, num_hard)
        self.alpha = alpha
        self.num_hard = num_hard

    def forward(self, a: Tensor, b: Tensor, negatives: Tensor | None = None) -> Tensor:
        """Loss of paired ``(B, d)`` views, with optional extra ``(K, d)`` negatives."""
        return hard_contrastive_loss(
            a,
            b,
            negatives=negatives,
            temperature=self.tau(),
            alpha=self.alpha,
            num_hard=self.num_hard,
            **self.options(),
        )
