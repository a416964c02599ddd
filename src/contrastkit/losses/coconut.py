"""COCONUT's rehearsal-only SupCon (NSPT / NTPT) and the source-based SupCon it instantiates.

Reference:
    - [0] Cappellazzo et al., "Continual Contrastive Spoken Language Understanding" (COCONUT),
      2023/2024. No public code was found.

What is reconstructed and what is verified: the *structure* — anchors restricted to rehearsal
(replay-buffer) samples, positives from the frozen teacher's projections of same-class samples,
negatives from the student (NSPT) or from the teacher (NTPT) — comes from the abstract and the
OpenReview reviews. The exact formula (which samples enter the denominator, whether the
teacher's view of the anchor's own sample is a positive, the normalisation) is a
**reconstruction**, not checked against the paper's Eq. 5 (see ``methods.md`` §6b, marked
[unverified]). What *is* verified here, by tests, is that the code computes exactly the formula
written in :func:`source_supcon`, and that it reduces to :func:`contrastkit.supcon` when all
three sources are the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_embeddings,
    check_labels,
    check_positive,
    check_reduction,
    reduce,
)
from contrastkit.engine import TilePairs, pairwise_lse
from contrastkit.losses._common import prepare, scale_by_temperature, validate_temperature
from contrastkit.losses.supcon import mean_over_counted, multi_positive_losses


def _shares_label(row_labels: Tensor, col_labels: Tensor) -> Tensor:
    """``(r, c)`` bool: same class id, or at least one shared label for 0/1 multi-label rows."""
    if row_labels.ndim == 1:
        return row_labels[:, None] == col_labels[None, :]
    return (row_labels.float() @ col_labels.float().T) > 0


@dataclass(frozen=True)
class LabelBlockPairs:
    """Pair rule keeping only the same-label (or only the other-label) candidates.

    With ``same_label=True`` the kept pairs are the positives and get weight 1 (optionally
    without the ``i == j`` pair); with ``same_label=False`` only other-label pairs are counted
    and no weights are returned. Rows and columns index the same batch of samples.

    Attributes:
        labels: ``(B,)`` class ids or ``(B, L)`` 0/1 multi-labels.
        same_label: keep same-label pairs (positives) or other-label pairs (negatives).
        exclude_self: also drop the pair ``(i, i)`` (only meaningful with ``same_label``).
    """

    labels: Tensor
    same_label: bool
    exclude_self: bool = False

    @property
    def has_weights(self) -> bool:
        """Positive blocks carry unit weights; negative blocks none."""
        return self.same_label

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Masks (and unit weights) of the tile ``S[rows, cols]``."""
        shared = _shares_label(self.labels[rows], self.labels[cols])  # (r, c)
        if not self.same_label:
            return TilePairs(exclude=shared)
        keep = shared
        if self.exclude_self:
            idx = torch.arange(self.labels.shape[0], device=self.labels.device)
            keep = keep & (idx[rows, None] != idx[None, cols])
        return TilePairs(exclude=~keep, weight=keep.float())


def source_supcon_per_anchor(
    anchors: Tensor,
    labels: Tensor,
    positives: Tensor,
    negatives: Tensor,
    *,
    anchor_mask: Tensor | None = None,
    exclude_self_positive: bool = False,
    temperature: float | Tensor = 0.07,
    base_temperature: float | None = None,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-anchor losses of :func:`source_supcon` and the mask of anchors that count.

    Returns:
        ``(losses, counted)``, both ``(B,)``: ``counted`` is ``anchor_mask`` and "has a
        positive"; other rows have loss 0.
    """
    check_embeddings(anchors, "anchors", check_finite=check_values)
    batch = anchors.shape[0]
    for name, x in (("positives", positives), ("negatives", negatives)):
        check_embeddings(x, name, check_finite=check_values)
        if x.shape != anchors.shape:
            raise ValueError(
                f"{name} must be row-aligned with anchors, shape {tuple(anchors.shape)}, "
                f"got {tuple(x.shape)}"
            )
    check_labels(labels, batch)
    if anchor_mask is not None and (
        not isinstance(anchor_mask, Tensor)
        or anchor_mask.dtype != torch.bool
        or anchor_mask.shape != (batch,)
    ):
        raise ValueError(f"anchor_mask must be a bool tensor of shape ({batch},)")
    if check_values:
        validate_temperature(temperature)
    if base_temperature is not None:
        check_positive(base_temperature, "base_temperature")

    z_anchor = scale_by_temperature(prepare(anchors, normalize), temperature)  # (B, d) h / τ
    z_pos, z_neg = prepare(positives, normalize), prepare(negatives, normalize)  # (B, d) each
    labels = labels.to(z_anchor.device)
    pos_rule = LabelBlockPairs(labels, same_label=True, exclude_self=exclude_self_positive)
    pos = pairwise_lse(z_anchor, z_pos, pos_rule, chunk_size=chunk_size).rows
    neg = pairwise_lse(z_anchor, z_neg, LabelBlockPairs(labels, False), chunk_size=chunk_size).rows
    assert pos is not None and neg is not None
    assert pos.weighted_sum is not None and pos.weight_total is not None
    lse = pos.merge(neg).lse  # (B,) log(Σ_{P(i)} e^{s} + Σ_{N(i)} e^{s})
    num_pos = pos.weight_total  # (B,) |P(i)|
    counted = num_pos > 0
    if anchor_mask is not None:
        counted = counted & anchor_mask.to(counted.device)
    if check_values and not bool(counted.any()):
        raise ValueError(
            "labels/anchor_mask: no anchor has a positive (no masked anchor shares its label "
            "with a row of the positive source)"
        )
    losses = multi_positive_losses(
        lse,
        pos.weighted_sum,
        num_pos,
        counted,
        temperature=temperature,
        base_temperature=base_temperature,
    )
    return losses, counted


def source_supcon(
    anchors: Tensor,
    labels: Tensor,
    positives: Tensor,
    negatives: Tensor,
    *,
    anchor_mask: Tensor | None = None,
    exclude_self_positive: bool = False,
    temperature: float | Tensor = 0.07,
    base_temperature: float | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """SupCon with separate anchor, positive and negative sources and an anchor mask.

    All three sources are row-aligned views of the same ``B`` samples (e.g. student and teacher
    projections of one batch). For anchors ``i`` in ``R = {i : anchor_mask_i}``, with
    ``P(i) = {p : y_p shares a label with y_i}`` (minus ``i`` if ``exclude_self_positive``),
    ``N(i) = {n : no shared label}``, ``h`` = anchors, ``ĥ`` = positives, ``h̄`` = negatives::

        ℓ_i = -(τ/τ_base) (1/|P(i)|) Σ_{p ∈ P(i)} log [ exp(h_i·ĥ_p/τ) /
                  ( Σ_{p' ∈ P(i)} exp(h_i·ĥ_p'/τ) + Σ_{n ∈ N(i)} exp(h_i·h̄_n/τ) ) ]

    The positives **are** in the denominator; same-label rows of the negative source are not
    (they are neither positives nor negatives). With ``anchors = positives = negatives`` and
    ``exclude_self_positive=True`` this is exactly :func:`contrastkit.supcon` on ``(B, d)``.

    Reduction: mean over the anchors in ``R`` that have a positive; ``'none'`` returns ``(B,)``
    with 0 for the other rows. The anchor restriction is a mask, not an index: every row is
    computed (no host sync) and the rows outside ``R`` are zeroed.

    Memory: runs on the similarity engine (one positive block with unit weights, one negative
    block, merged with :meth:`SideStats.merge`), ``O(B·d)`` on the tiled path.

    Args:
        anchors: ``(B, d)`` anchor features (COCONUT: the student's projections).
        labels: ``(B,)`` int class ids or ``(B, L)`` 0/1 multi-labels.
        positives: ``(B, d)`` positive source (COCONUT: the frozen teacher's projections).
            Detach it yourself if it must not be trained.
        negatives: ``(B, d)`` negative source (NSPT: the student; NTPT: the teacher).
        anchor_mask: ``(B,)`` bool, the rows used as anchors (COCONUT: rehearsal samples);
            None uses every row.
        exclude_self_positive: drop the positive source's row ``i`` from ``P(i)`` (needed when
            the positive source is the anchor source; the teacher's view of the anchor's own
            sample is kept as a positive by default).
        temperature: ``τ`` > 0.
        base_temperature: ``τ_base`` of the ``τ/τ_base`` factor (None: no factor).
        normalize: L2-normalise the three sources.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check NaN/inf and that some anchor has a positive (host syncs).

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on misaligned sources, bad labels or mask, non-finite values, τ ≤ 0, or no
            masked anchor with a positive.

    Peers: none implement it; equals :func:`contrastkit.supcon` (SupContrast semantics) in the
    all-student case; tested against a float64 loop reference of the formula above.

    Examples:
        >>> student, teacher = torch.randn(8, 16), torch.randn(8, 16)
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> rehearsal = torch.tensor([True, True, False, False, True, False, False, False])
        >>> loss = source_supcon(student, labels, teacher, student, anchor_mask=rehearsal)
    """
    check_reduction(reduction)
    losses, counted = source_supcon_per_anchor(
        anchors,
        labels,
        positives,
        negatives,
        anchor_mask=anchor_mask,
        exclude_self_positive=exclude_self_positive,
        temperature=temperature,
        base_temperature=base_temperature,
        normalize=normalize,
        chunk_size=chunk_size,
        check_values=check_values,
    )
    if reduction == "mean":
        return mean_over_counted(losses, counted)
    return reduce(losses, reduction)


def coconut_loss(
    student: Tensor,
    teacher: Tensor,
    labels: Tensor,
    rehearsal_mask: Tensor,
    *,
    teacher_negatives: bool = False,
    exclude_self_positive: bool = False,
    temperature: float | Tensor = 0.07,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """COCONUT's rehearsal-only SupCon: NSPT (default) or NTPT (``teacher_negatives=True``).

    NSPT ("negative student, positive teacher"): anchors are the student projections ``h_i`` of
    the rehearsal samples ``i ∈ R``; positives are the frozen teacher projections ``ĥ_p`` of
    every same-class sample of the batch; negatives are the student projections ``h_n`` of every
    other-class sample (rehearsal and new-task alike)::

        L_NSPT = -(1/|R|) Σ_{i∈R} (1/|P(i)|) Σ_{p∈P(i)} log [ exp(h_i·ĥ_p/τ) /
                   ( Σ_{p'∈P(i)} exp(h_i·ĥ_p'/τ) + Σ_{n∈N(i)} exp(h_i·h_n/τ) ) ]

    NTPT ("negative teacher, positive teacher") takes the negatives from the teacher, ``ĥ_n``.
    The teacher is detached here. This is :func:`source_supcon` with
    ``(anchors, positives, negatives) = (student, teacher, student | teacher)``.

    **Reconstructed, not verified**: the formula is rebuilt from the abstract and reviews
    (``methods.md`` §6b [unverified]); no official code exists. In particular whether ``P(i)``
    contains the teacher's view of ``i`` itself (default: yes; ``exclude_self_positive=True``
    drops it) and whether anchors range over all of the batch's rehearsal samples (as here) are
    open. No value from the paper is reproduced.

    Args:
        student: ``(B, d)`` projections of the model being trained.
        teacher: ``(B, d)`` projections of the frozen previous-task model, same samples.
        labels: ``(B,)`` int class ids (or ``(B, L)`` 0/1 multi-labels).
        rehearsal_mask: ``(B,)`` bool, True for replay-buffer samples (the anchors).
        teacher_negatives: NTPT instead of NSPT.
        exclude_self_positive: drop ``ĥ_i`` from the positives of anchor ``i``.
        temperature: ``τ`` > 0 (SupCon default 0.07; the paper's value is unverified).
        normalize: L2-normalise student and teacher projections.
        reduction: ``'mean'`` (over rehearsal anchors with a positive) | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check NaN/inf and that some rehearsal anchor has a positive.

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: as :func:`source_supcon`.

    Peers: none (no public implementation).

    Examples:
        >>> student, teacher = torch.randn(8, 16), torch.randn(8, 16)
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> rehearsal = torch.tensor([True, True, False, False, True, False, False, False])
        >>> loss = coconut_loss(student, teacher, labels, rehearsal)
    """
    if not isinstance(teacher, Tensor):
        raise ValueError(f"teacher must be a torch.Tensor, got {type(teacher).__name__}")
    frozen = teacher.detach()
    return source_supcon(
        student,
        labels,
        frozen,
        frozen if teacher_negatives else student,
        anchor_mask=rehearsal_mask,
        exclude_self_positive=exclude_self_positive,
        temperature=temperature,
        normalize=normalize,
        reduction=reduction,
        chunk_size=chunk_size,
        check_values=check_values,
    )


class SourceSupConLoss(nn.Module):
    """Module wrapper of :func:`source_supcon`; see it for the formula.

    Inputs: ``forward(anchors, labels, positives, negatives, anchor_mask=None)``. Use it for
    SupCon variants whose anchors, positives and negatives come from different models or
    memories (distillation, continual learning); :class:`SupConLoss` is the one-source case.

    Examples:
        >>> loss_fn = SourceSupConLoss(temperature=0.1)
        >>> h, t = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(h, torch.tensor([0, 1, 0, 1, 2, 2, 3, 3]), t, h)
    """

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float | None = None,
        exclude_self_positive: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        validate_temperature(temperature)
        if base_temperature is not None:
            check_positive(base_temperature, "base_temperature")
        check_reduction(reduction)
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.exclude_self_positive = exclude_self_positive
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(
        self,
        anchors: Tensor,
        labels: Tensor,
        positives: Tensor,
        negatives: Tensor,
        anchor_mask: Tensor | None = None,
    ) -> Tensor:
        """Loss of ``(B, d)`` anchors against row-aligned positive and negative sources."""
        return source_supcon(
            anchors,
            labels,
            positives,
            negatives,
            anchor_mask=anchor_mask,
            exclude_self_positive=self.exclude_self_positive,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )


class CoconutLoss(nn.Module):
    """Module wrapper of :func:`coconut_loss` (NSPT, or NTPT with ``teacher_negatives=True``).

    Inputs: ``forward(student, teacher, labels, rehearsal_mask)``. Use it in class-incremental
    learning with experience replay: it pulls the student's replayed samples towards the frozen
    teacher's same-class projections while pushing them from the current other-class samples.
    The formula is a reconstruction (see :func:`coconut_loss`).

    Examples:
        >>> loss_fn = CoconutLoss()
        >>> s, t = torch.randn(8, 16), torch.randn(8, 16)
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(s, t, labels, labels < 2)
    """

    def __init__(
        self,
        temperature: float = 0.07,
        teacher_negatives: bool = False,
        exclude_self_positive: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        validate_temperature(temperature)
        check_reduction(reduction)
        self.temperature = temperature
        self.teacher_negatives = teacher_negatives
        self.exclude_self_positive = exclude_self_positive
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(
        self, student: Tensor, teacher: Tensor, labels: Tensor, rehearsal_mask: Tensor
    ) -> Tensor:
        """Loss of ``(B, d)`` student/teacher projections, labels and the rehearsal mask."""
        return coconut_loss(
            student,
            teacher,
            labels,
            rehearsal_mask,
            teacher_negatives=self.teacher_negatives,
            exclude_self_positive=self.exclude_self_positive,
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )
