"""SupCon: supervised contrastive loss with label-defined (multi-)positives.

Reference:
    - [0] Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
      HobbitLong/SupContrast ``losses.py::SupConLoss``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_positive,
    check_reduction,
    reduce,
    validate_labeled,
)
from contrastkit.distributed import all_gather_with_grad, is_distributed
from contrastkit.engine import Pairs, pairwise_lse
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature

ContrastMode = Literal["all", "one"]


@full_precision
def supcon_per_anchor(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.07,
    base_temperature: float | None = None,
    contrast_mode: ContrastMode = "all",
    normalize: bool = True,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
    gather_distributed: bool = False,
) -> tuple[Tensor, Tensor]:
    """Per-anchor SupCon losses and the mask of anchors that have a positive.

    With ``gather_distributed`` (and a multi-rank process group) the anchors are this rank's
    views and the contrast set is every rank's views (gathered with gradient, labels too).

    Returns:
        ``(losses, has_positive)``, both ``(num_anchors,)``; anchors without a positive have
        loss 0 and ``has_positive = False``. See :func:`supcon` for the formula.
    """
    checks = validate_labeled(
        embeddings,
        labels,
        views=True,
        normalize=normalize,
        check_values=check_values,
        temperature=temperature,
    )
    if embeddings.ndim == 2:
        embeddings = embeddings.unsqueeze(1)  # (B, 1, d)
    batch, views = embeddings.shape[:2]
    distributed = gather_distributed and is_distributed()
    if batch * views < 3 and not distributed:
        raise ValueError(
            f"embeddings needs at least 3 rows in all (B·V): with {batch * views} an anchor's "
            f"softmax holds only its positive, so the loss is 0 whatever the embeddings "
            f"(shape {tuple(embeddings.shape)})"
        )
    if contrast_mode not in ("all", "one"):
        raise ValueError(f"contrast_mode must be 'all' or 'one', got {contrast_mode!r}")
    if base_temperature is not None:
        check_positive(base_temperature, "base_temperature")

    # Views-major order, as SupContrast: [view 0 of all samples; view 1; ...].
    z = prepare(embeddings, normalize, checks).transpose(0, 1).reshape(views * batch, -1)  # (VB, d)
    rank = dist.get_rank() if distributed else 0
    if labels is None:  # SimCLR: positives = other views; sample ids unique across ranks
        labels = torch.arange(batch, device=z.device) + rank * batch
    row_labels = labels.repeat(views) if labels.ndim == 1 else labels.repeat(views, 1)
    anchors = z if contrast_mode == "all" else z[:batch]  # (A, d)
    num_anchors = anchors.shape[0]
    # The contrast set: this rank's views, or every rank's (rank-major) with gradient.
    candidates = all_gather_with_grad(z) if distributed else z  # (W·VB, d)
    col_labels = all_gather_with_grad(row_labels) if distributed else row_labels
    positions = torch.arange(candidates.shape[0], device=z.device)
    offset = rank * views * batch  # this rank's first column
    pairs = Pairs(
        row_ids=positions[offset : offset + num_anchors],  # anchor i's own column: excluded
        col_ids=positions,
        row_labels=row_labels[:num_anchors],
        col_labels=col_labels,
    )
    stats = pairwise_lse(
        scale_by_temperature(anchors, temperature),
        candidates,
        pairs,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    ).rows
    assert stats is not None and stats.weighted_sum is not None and stats.weight_total is not None
    has_positive = stats.weight_total > 0  # (A,) |P(i)| > 0
    checks.require(
        _global_count(has_positive, distributed) > 0,
        "labels: no anchor has a positive (every label is unique and there is one view); "
        "SupCon needs at least two rows with the same label or several views",
    )
    losses = multi_positive_losses(
        stats.lse,
        stats.weighted_sum,
        stats.weight_total,
        has_positive,
        temperature=temperature,
        base_temperature=base_temperature,
    )
    return checks.verify(losses), has_positive


def _global_count(has_positive: Tensor, distributed: bool) -> Tensor:
    """Number of anchors with a positive, summed over ranks when ``distributed``."""
    count = has_positive.sum()
    if distributed:
        dist.all_reduce(count)
    return count


def mean_over_counted(
    losses: Tensor, has_positive: Tensor, gather_distributed: bool = False
) -> Tensor:
    """Mean over anchors that have a positive — over the global batch when distributed.

    Shared by SupCon and its variants (COCONUT, SupReMix).

    Distributed: ``world · Σ_local ℓ / Σ_global |counted|``, so that DDP's average over ranks is
    the global mean even when ranks count different numbers of anchors.
    """
    distributed = gather_distributed and is_distributed()
    count = _global_count(has_positive, distributed).clamp(min=1)
    world = dist.get_world_size() if distributed else 1
    return losses.sum() * world / count


def multi_positive_losses(
    lse: Tensor,
    positive_logit_sum: Tensor,
    num_positives: Tensor,
    counted: Tensor,
    *,
    temperature: float | Tensor,
    base_temperature: float | None,
) -> Tensor:
    """Per-anchor ``-(τ/τ_base) · mean_{p ∈ P(i)} log softmax_i(p)`` from engine statistics.

    ``= (τ/τ_base) · (lse_i - Σ_p s_ip / |P(i)|)``; 0 for anchors that are not ``counted``.
    Shared by SupCon and its variants (COCONUT, SupReMix).
    """
    per_anchor = lse - positive_logit_sum / num_positives.clamp(min=1)  # (A,)
    losses = torch.where(counted, per_anchor, torch.zeros_like(per_anchor))
    if base_temperature is not None:  # τ is detached here: a constant factor, as SupContrast
        tau = temperature.detach().reshape(()) if isinstance(temperature, Tensor) else temperature
        losses = losses * (tau / base_temperature)
    return losses


@full_precision
def supcon(
    embeddings: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float | Tensor = 0.07,
    base_temperature: float | None = None,
    contrast_mode: ContrastMode = "all",
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
    gather_distributed: bool = False,
) -> Tensor:
    """Supervised contrastive loss ``L_sup_out``.

    Anchors are the views ``z_i`` (all of them, or view 0 with ``contrast_mode='one'``);
    ``P(i)`` are the other views with a shared label, ``A(i)`` all views except ``i``::

        ℓ_i = -(τ / τ_base) · (1/|P(i)|) Σ_{p ∈ P(i)} log( exp(s_ip) / Σ_{k ∈ A(i)} exp(s_ik) )

    with ``s_ik = <z_i, z_k> / τ``. The other positives **are** in the denominator.
    Anchors without any positive are excluded from the mean (and counted by
    :class:`SupConLoss`); a batch without any positive raises ``ValueError`` (when
    ``check_values``), and so does a batch of fewer than 3 rows in all (``B·V < 3``: each
    anchor's softmax would hold only its positive, a loss of 0 whatever the embeddings).

    Reduction: mean over anchors that have a positive. ``'none'`` returns ``(num_anchors,)``
    in views-major order (view 0 of every sample, then view 1, ...), 0 for anchors without a
    positive.

    Defaults (SupContrast): ``τ = 0.07``; ``base_temperature=None`` means ``τ_base = τ`` (no
    rescaling). SupContrast's ``base_temperature=0.07`` multiplies the loss by ``τ / 0.07``.
    In that factor ``τ`` is **detached** (a constant scale, as SupContrast's float): a learnable
    temperature gets its gradient from the logits ``s_ik`` only.

    Args:
        embeddings: ``(B, d)`` or ``(B, V, d)`` (V views per sample).
        labels: ``(B,)`` int class ids, ``(B, L)`` 0/1 multi-labels (positives share ≥ 1 label),
            or None (positives are the other views of the same sample: SimCLR).
        temperature: ``τ`` > 0.
        base_temperature: ``τ_base`` of the ``τ / τ_base`` factor (None: no factor; ``τ`` is
            detached in it).
        contrast_mode: ``'all'`` (every view is an anchor) or ``'one'`` (view 0 only).
        normalize: L2-normalise first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: value checks (NaN/inf, all-zero rows, 0/1 multi-labels, that some
            positive exists, a finite result; one host sync).
        gather_distributed: under torch.distributed, this rank's views are the anchors and
            every rank's views (gathered with gradient, with their labels) the contrast set;
            the mean runs over the anchors with a positive of **all** ranks. With DDP's
            gradient averaging the gradients then equal those of the single-process loss on
            the global batch. A no-op without a multi-rank process group.

    Returns:
        Scalar loss, or ``(num_anchors,)`` with ``reduction='none'``.

    Raises:
        ValueError: on bad shapes/labels, fewer than 3 rows in all, non-finite values, τ ≤ 0,
            no positive at all, or a non-finite result.

    Peers: equals SupContrast ``SupConLoss(temperature, base_temperature=τ_base)`` when every
    anchor has a positive (SupContrast also averages in anchors without positives, as 0);
    pytorch-metric-learning ``SupConLoss(temperature)`` on ``(B·V, d)`` with repeated labels
    (no ``τ/τ_base`` factor; it averages over anchors with a non-zero loss).

    Deliberate difference: when an anchor has no negative (all labels equal), contrastkit
    gives SupContrast's value, ``log Σ_{k∈A(i)} exp(s_ik) - mean_p s_ip`` (≥ ``log |A(i)|``,
    with a gradient that evens out the similarities), while pytorch-metric-learning returns 0
    for such anchors (it drops pairs without a negative).

    Examples:
        >>> views = torch.randn(8, 2, 16)
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> loss = supcon(views, labels)
    """
    check_reduction(reduction)
    losses, has_positive = supcon_per_anchor(
        embeddings,
        labels,
        temperature=temperature,
        base_temperature=base_temperature,
        contrast_mode=contrast_mode,
        normalize=normalize,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        check_values=check_values,
        gather_distributed=gather_distributed,
    )
    return reduce_supcon(losses, has_positive, reduction, gather_distributed)


def reduce_supcon(
    losses: Tensor, counted: Tensor, reduction: Reduction, gather_distributed: bool = False
) -> Tensor:
    """SupCon's reduction: the mean over the ``counted`` anchors, or the sum / the losses."""
    if reduction == "mean":
        return mean_over_counted(losses, counted, gather_distributed)
    return reduce(losses, reduction)


class SupConLoss(LossModule):
    """Module wrapper of :func:`supcon`.

    Inputs: ``forward(embeddings, labels=None)`` with ``(B, d)`` or ``(B, V, d)`` embeddings
    and ``(B,)`` / ``(B, L)`` labels. Use it when class labels (or multi-labels) define the
    positives; with ``labels=None`` and 2 views it is :class:`NTXentLoss`. The constructor
    takes the keyword arguments of :func:`supcon` (``gather_distributed`` included).

    Attributes:
        anchors_without_positive: buffer, the number of anchors of the last batch that had no
            positive (excluded from the mean). Reading it costs a sync; the loss does not.

    Examples:
        >>> loss_fn = SupConLoss(temperature=0.07)
        >>> loss = loss_fn(torch.randn(8, 2, 16), torch.tensor([0, 1, 0, 1, 2, 2, 3, 3]))
    """

    anchors_without_positive: Tensor

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.07,
        base_temperature: float | None = None,
        contrast_mode: ContrastMode = "all",
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        gather_distributed: bool = False,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            gather_distributed=gather_distributed,
            check_values=check_values,
        )
        if base_temperature is not None:
            check_positive(base_temperature, "base_temperature")
        if contrast_mode not in ("all", "one"):
            raise ValueError(f"contrast_mode must be 'all' or 'one', got {contrast_mode!r}")
        check_reduction(reduction)
        self.base_temperature = base_temperature
        self.contrast_mode: ContrastMode = contrast_mode
        self.reduction: Reduction = reduction
        self.register_buffer(
            "anchors_without_positive", torch.zeros((), dtype=torch.long), persistent=False
        )

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        """Loss of ``(B, d)`` / ``(B, V, d)`` embeddings with ``(B,)`` / ``(B, L)`` labels."""
        losses, has_positive = supcon_per_anchor(
            embeddings,
            labels,
            temperature=self.tau(),
            base_temperature=self.base_temperature,
            contrast_mode=self.contrast_mode,
            **self.options(),
        )
        self.anchors_without_positive.copy_((~has_positive).sum())
        return reduce_supcon(losses, has_positive, self.reduction, self.gather_distributed)
