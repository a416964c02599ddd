"""SupCon with separate anchor, positive and negative sources, and an anchor mask.

The SupCon variant behind COCONUT (:mod:`contrastkit.losses.coconut`) and, more generally, behind
distillation and continual-learning objectives whose anchors, positives and negatives come from
different models or memories. With one source it is :func:`contrastkit.supcon`.

Reference:
    - [0] Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (the one-source case).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_compatible,
    check_labels,
    check_pair,
    check_positive,
    check_reduction,
    check_temperature,
    check_tensor,
)
from contrastkit.engine import TilePairs, pairwise_lse
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.losses.supcon import multi_positive_losses, reduce_supcon

#: Argument names of the four inputs and the mask, for error messages (COCONUT renames them).
SourceNames = tuple[str, str, str, str, str]
_NAMES: SourceNames = ("anchors", "labels", "positives", "negatives", "anchor_mask")


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


@full_precision
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
    return source_supcon_parts(
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


def source_supcon_parts(
    anchors: Tensor,
    labels: Tensor,
    positives: Tensor,
    negatives: Tensor,
    *,
    anchor_mask: Tensor | None,
    exclude_self_positive: bool,
    temperature: float | Tensor,
    base_temperature: float | None,
    normalize: bool,
    chunk_size: int | None,
    check_values: bool,
    names: SourceNames = _NAMES,
) -> tuple[Tensor, Tensor]:
    """:func:`source_supcon_per_anchor`, with the inputs' names for the messages (COCONUT)."""
    a_name, l_name, p_name, n_name, m_name = names
    check_tensor(anchors, a_name)
    batch = anchors.shape[0]
    for name, x in ((p_name, positives), (n_name, negatives)):
        check_tensor(x, name)
        check_pair(anchors, x, (a_name, name))
    sources = [(a_name, anchors), (p_name, positives), (n_name, negatives)]
    check_compatible(sources)
    if batch - int(exclude_self_positive) < 2:
        raise ValueError(
            f"{a_name} needs at least {2 + int(exclude_self_positive)} rows: with {batch} an "
            "anchor's softmax holds only its positive (no negative), a loss of 0 whatever the "
            "embeddings"
        )
    checks = ValueChecks(check_values, a_name)
    check_labels(labels, batch, l_name, checks)
    if labels.device != anchors.device:
        raise ValueError(f"{l_name} must be on the device of {a_name}, got {labels.device}")
    if anchor_mask is not None and (
        not isinstance(anchor_mask, Tensor)
        or anchor_mask.dtype != torch.bool
        or anchor_mask.shape != (batch,)
    ):
        raise ValueError(f"{m_name} must be a bool tensor of shape ({batch},)")
    for name, x in sources:
        checks.finite(name, x)
        if normalize:
            checks.nonzero_rows(name, x)
    check_temperature(temperature, checks)
    if base_temperature is not None:
        check_positive(base_temperature, "base_temperature")

    z_anchor = scale_by_temperature(prepare(anchors, normalize), temperature)  # (B, d) h / τ
    z_pos, z_neg = prepare(positives, normalize), prepare(negatives, normalize)  # (B, d) each
    pos_rule = LabelBlockPairs(labels, same_label=True, exclude_self=exclude_self_positive)
    pos = pairwise_lse(z_anchor, z_pos, pos_rule, chunk_size=chunk_size).rows
    neg = pairwise_lse(z_anchor, z_neg, LabelBlockPairs(labels, False), chunk_size=chunk_size).rows
    assert pos is not None and neg is not None
    assert pos.weighted_sum is not None and pos.weight_total is not None
    lse = pos.merge(neg).lse  # (B,) log(Σ_{P(i)} e^{s} + Σ_{N(i)} e^{s})
    num_pos = pos.weight_total  # (B,) |P(i)|
    counted = num_pos > 0
    if anchor_mask is not None:
        counted = counted & anchor_mask
    checks.require(
        counted.any(),
        f"{l_name}/{m_name}: no anchor has a positive (no masked anchor shares its label "
        f"with a row of the positive source)",
    )
    losses = multi_positive_losses(
        lse,
        pos.weighted_sum,
        num_pos,
        counted,
        temperature=temperature,
        base_temperature=base_temperature,
    )
    return checks.verify(losses), counted


@full_precision
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
    return reduce_supcon(losses, counted, reduction)


class SourceSupConLoss(LossModule):
    """Module wrapper of :func:`source_supcon`; see it for the formula.

    Inputs: ``forward(anchors, labels, positives, negatives, anchor_mask=None)``. Use it for
    SupCon variants whose anchors, positives and negatives come from different models or
    memories (distillation, continual learning); :class:`SupConLoss` is the one-source case.

    Args: the keyword arguments of :func:`source_supcon`.

    Examples:
        >>> loss_fn = SourceSupConLoss(temperature=0.1)
        >>> h, t = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(h, torch.tensor([0, 1, 0, 1, 2, 2, 3, 3]), t, h)
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.07,
        base_temperature: float | None = None,
        exclude_self_positive: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            check_values=check_values,
        )
        if base_temperature is not None:
            check_positive(base_temperature, "base_temperature")
        self.base_temperature = base_temperature
        self.exclude_self_positive = exclude_self_positive

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
            temperature=self.tau(),
            base_temperature=self.base_temperature,
            **self.options(),
        )
