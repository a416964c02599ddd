"""COCONUT's rehearsal-only SupCon (NSPT / NTPT), an instance of :func:`source_supcon`.

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

from torch import Tensor, nn

from contrastkit._checks import Reduction, check_reduction
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision
from contrastkit.losses.source_supcon import source_supcon_parts
from contrastkit.losses.supcon import reduce_supcon


@full_precision
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
        >>> import torch
        >>> student, teacher = torch.randn(8, 16), torch.randn(8, 16)
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> rehearsal = torch.tensor([True, True, False, False, True, False, False, False])
        >>> loss = coconut_loss(student, teacher, labels, rehearsal)
    """
    check_reduction(reduction)
    if not isinstance(teacher, Tensor):
        raise ValueError(f"teacher must be a torch.Tensor, got {type(teacher).__name__}")
    frozen = teacher.detach()
    negative_source = ("teacher", frozen) if teacher_negatives else ("student", student)
    losses, counted = source_supcon_parts(
        student,
        labels,
        frozen,
        negative_source[1],
        anchor_mask=rehearsal_mask,
        exclude_self_positive=exclude_self_positive,
        temperature=temperature,
        base_temperature=None,
        normalize=normalize,
        chunk_size=chunk_size,
        check_values=check_values,
        names=("student", "labels", "teacher", negative_source[0], "rehearsal_mask"),
    )
    return reduce_supcon(losses, counted, reduction)


class CoconutLoss(LossModule):
    """Module wrapper of :func:`coconut_loss` (NSPT, or NTPT with ``teacher_negatives=True``).

    Inputs: ``forward(student, teacher, labels, rehearsal_mask)``. Use it in class-incremental
    learning with experience replay: it pulls the student's replayed samples towards the frozen
    teacher's same-class projections while pushing them from the current other-class samples.
    The formula is a reconstruction (see :func:`coconut_loss`).

    Args: the keyword arguments of :func:`coconut_loss`.

    Examples:
        >>> import torch
        >>> loss_fn = CoconutLoss()
        >>> s, t = torch.randn(8, 16), torch.randn(8, 16)
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(s, t, labels, labels < 2)
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.07,
        teacher_negatives: bool = False,
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
        self.teacher_negatives = teacher_negatives
        self.exclude_self_positive = exclude_self_positive

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
            temperature=self.tau(),
            **self.options(),
        )
