"""COCONUT's rehearsal-only SupCon (NSPT, and the NTPT design variant), via :func:`source_supcon`.

Reference:
    - [0] Cappellazzo, Fini, Yang, Falavigna, Brutti, Raj, "Continual Contrastive Spoken Language
      Understanding" (COCONUT), arXiv 2310.02699, ACL Findings 2024. No official code was found
      (``umbertocappellazzo/CL_SLU`` is the authors' earlier rehearsal + KD work).

What the paper says, and what was checked (December 2026, stored copies of the arXiv abstract
v1-v3, the ACL Anthology page, the OpenReview page and a paper summary; the paper's body and
equations were **not** readable in those copies):

* COCONUT = experience replay + **two** contrastive terms: **NSPT** ("negative student, positive
  teacher"), which preserves old knowledge, and **MM**, a *multimodal* audio-text contrastive
  loss that aligns the encoder's audio features with text features to learn more discriminative
  representations of the *new* data. NTPT ("negative teacher, positive teacher") is **not** the
  multimodal term: it is one of the "different contrastive designs to combine the contrastive
  loss with teacher-student architectures" that the paper compares (the KD-style variant).
  ``coconut_loss`` implements NSPT (default) and NTPT (``teacher_negatives=True``); MM is an
  ordinary image-text InfoNCE (:class:`contrastkit.InfoNCELoss` with ``symmetric=True`` on the
  trainer's ``pairing = "text"``), see the ``coconut-fmnist`` recipe.
* NSPT is "a modified version of the standard supervised contrastive loss applied only to the
  rehearsal samples" (abstract v1/v2; the ACL version drops "applied only to the rehearsal
  samples"), "pulling closer samples from the same class and pushing away the others". The teacher
  is the model frozen at the end of the previous task.

What is a **reconstruction** (not checked against the paper's equation): the exact sets in the
denominator (here: the teacher's same-class positives plus the student's other-class rows of
the whole batch, rehearsal and new alike), whether the teacher's view of the anchor's own sample
is a positive (default yes; ``exclude_self_positive=True`` drops it), the normalisation (mean
over positives, then over rehearsal anchors; no ``τ/τ_base`` factor) and the temperature (no
value from the paper). What the tests verify: the code computes exactly the formula written in
:func:`coconut_loss` (a float64 loop reference), gradients flow only into the student, and with
``teacher = student`` and the self-pair excluded it *is* SupCon (Khosla et al. ``L_out``)
restricted to rehearsal anchors — the "modified SupCon" the abstract describes.
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

    The anchors and the two sources follow the paper (NSPT: student anchors on rehearsal rows,
    teacher positives, student negatives); the exact denominator, the self-positive and the
    normalisation are a reconstruction (see the module docstring). In class-incremental training
    (``contrastkit.train.continual``) the trainer passes ``student``, ``teacher`` (the frozen
    previous-task model) and ``rehearsal_mask``; the term is inactive on the first task.

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
