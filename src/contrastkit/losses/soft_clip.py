"""SoftCLIP: CLIP cross-entropy against the target modality's own similarity softmax.

A cross-entropy of the softmax over ``s_ij = <a_i, b_j> / τ`` against *soft* targets taken from
the similarities of the target modality itself, ``softmax(<b_i, b_j> / τ_t)`` — M3CoL's and
MindEye's partner of MixCo (:mod:`contrastkit.losses.mixco`).

References:
    - [0] Scotti et al., "Reconstructing the Mind's Eye" (MindEye, BiMixCo + SoftCLIP), 2023.
    - [1] Kumar et al., "Multimodal Contrastive Learning with Mixup" (M3CoL), TMLR 2025.
      ``RaghavSinghal10/M3CoL`` ``model/utils.py`` (``soft_clip_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_chunk_size,
    check_positive,
    check_reduction,
    reduce,
    validate_pair,
)
from contrastkit.engine import TilePairs, pairwise_lse, safe_logsumexp
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.losses.mixco import soft_cross_entropy


@dataclass(frozen=True)
class SoftTargets:
    """Pair rule of SoftCLIP targets ``T_ij = exp(<k_i, k_j>/τ_t - lse_i)`` (row softmax).

    Attributes:
        keys: ``(n, k)`` target-modality embeddings (no gradient), already divided by nothing.
        col_keys: ``(m, k)`` keys of the candidates.
        row_lse: ``(n,)`` ``log Σ_j exp(<k_i, col_keys_j>/τ_t)``, the row normaliser.
        inverse_temperature: ``1 / τ_t`` (no gradient).
    """

    keys: Tensor
    col_keys: Tensor
    row_lse: Tensor
    inverse_temperature: float | Tensor

    @property
    def has_weights(self) -> bool:
        """Always True: the targets are the weights."""
        return True

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Soft targets of the tile ``S[rows, cols]``."""
        logits = (self.keys[rows] @ self.col_keys[cols].T) * self.inverse_temperature
        return TilePairs(weight=torch.exp(logits - self.row_lse[rows, None]))


@full_precision
def soft_clip_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.125,
    target_temperature: float | None = None,
    symmetric: bool = True,
    detach_targets: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """SoftCLIP: CLIP cross-entropy against the target modality's own similarity softmax.

    With ``s_ij = <a_i, b_j> / τ`` and soft targets ``T_ij = softmax_j(<b_i, b_j> / τ_t)``::

        ℓ_i^{a→b} = -Σ_j T_ij log softmax_j(s_i·)
        ℓ_j^{b→a} = -Σ_i T_ji log softmax_i(s_·j)

    ``T`` is symmetric in its logits, so the b→a targets of column ``j`` are row ``j`` of ``T``
    (as in the reference). Every candidate is in the denominator; ``symmetric=True`` averages
    the two directions per index. Targets sharpen to the identity as ``τ_t → 0``, where the loss
    becomes the CLIP loss.

    Memory and gradients: with ``detach_targets=True`` (a frozen target tower, e.g. CLIP image
    embeddings in MindEye) the targets are expanded per tile from ``b`` and the row normalisers
    inside the similarity engine — ``O(B·d)`` on the tiled path. With ``detach_targets=False``
    (the reference: M3CoL trains both towers and its targets carry gradient) the gradient also
    flows through ``softmax(b bᵀ/τ_t)``; the engine's pair weights carry no gradient by design,
    so this path is dense, ``O(B²)`` memory.

    Defaults (M3CoL ``soft_clip_loss``): ``τ = τ_t = 0.125`` (``target_temperature=None`` uses
    ``τ``), both inputs normalised, targets not detached.

    Args:
        a: ``(B, d)`` predictions (the modality being aligned).
        b: ``(B, d)`` targets, row-aligned with ``a``; they also define the soft targets.
        temperature: ``τ`` > 0 of the logits.
        target_temperature: ``τ_t`` > 0 of the targets (None: ``τ``).
        symmetric: average the a→b and b→a directions.
        detach_targets: stop the gradient through the soft targets (engine path).
        normalize: L2-normalise ``a`` and ``b``.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)``).
        chunk_size: tile size of the engine path (``detach_targets=True``); None picks.
        check_values: check NaN/inf.

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on bad shapes, non-finite values or a temperature ≤ 0.

    Peers: no package implements it; equals MindEye/M3CoL ``soft_clip_loss(a, b, temp=τ)``
    (tested against a transcription, values and gradients).

    Examples:
        >>> text, image = torch.randn(8, 32), torch.randn(8, 32)
        >>> loss = soft_clip_loss(text, image)
    """
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    check_chunk_size(chunk_size)
    if target_temperature is not None:
        check_positive(target_temperature, "target_temperature")
    tau_t = temperature if target_temperature is None else target_temperature

    za, zb = prepare(a, normalize), prepare(b, normalize)  # (B, d)
    if detach_targets:
        losses = _soft_clip_engine(za, zb, temperature, tau_t, symmetric, chunk_size)
    else:
        losses = _soft_clip_dense(za, zb, temperature, tau_t, symmetric)
    return checks.verify(reduce(losses, reduction))


def _soft_clip_engine(
    za: Tensor,
    zb: Tensor,
    tau: float | Tensor,
    tau_t: float | Tensor,
    symmetric: bool,
    chunk_size: int | None,
) -> Tensor:
    keys = zb.detach()  # (B, d) frozen targets
    inverse_t = 1.0 / (float(tau_t) if not isinstance(tau_t, Tensor) else tau_t.detach())
    with torch.no_grad():
        norm = pairwise_lse(keys * inverse_t, keys, chunk_size=chunk_size).rows
        assert norm is not None
    targets = SoftTargets(keys=keys, col_keys=keys, row_lse=norm.lse, inverse_temperature=inverse_t)
    rows = pairwise_lse(scale_by_temperature(za, tau), zb, targets, chunk_size=chunk_size).rows
    assert rows is not None
    losses = soft_cross_entropy(rows.lse, rows.weighted_sum, rows.weight_total)  # (B,)
    if symmetric:
        # b→a: rows are b_j, candidates a_i, targets T_ji (row j of T) — the same rule.
        cols = pairwise_lse(scale_by_temperature(zb, tau), za, targets, chunk_size=chunk_size).rows
        assert cols is not None
        losses = 0.5 * (losses + soft_cross_entropy(cols.lse, cols.weighted_sum, cols.weight_total))
    return losses


def _soft_clip_dense(
    za: Tensor, zb: Tensor, tau: float | Tensor, tau_t: float | Tensor, symmetric: bool
) -> Tensor:
    logits = scale_by_temperature(za, tau) @ zb.T  # (B, B)
    targets = torch.softmax(scale_by_temperature(zb, tau_t) @ zb.T, dim=1)  # (B, B), with grad
    losses = safe_logsumexp(logits, 1) - (targets * logits).sum(1)
    if symmetric:
        losses = 0.5 * (losses + safe_logsumexp(logits, 0) - (targets * logits.T).sum(1))
    return losses


class SoftCLIPLoss(LossModule):
    """Module wrapper of :func:`soft_clip_loss`; see it for the formula and conventions.

    Inputs: ``forward(a, b)`` with row-aligned ``(B, d)`` embeddings. Use it when the target
    modality's own similarity structure should shape the contrastive targets (near-duplicate
    targets are partial positives), e.g. after the MixCo phase in M3CoL/MindEye.
    :class:`CWCLLoss` is the sibling with a linear ``(cos + 1)/2`` weighting and a learnable ``τ``.

    Examples:
        >>> loss = SoftCLIPLoss()(torch.randn(8, 32), torch.randn(8, 32))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.125,
        target_temperature: float | None = None,
        symmetric: bool = True,
        detach_targets: bool = False,
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
        if target_temperature is not None:
            check_positive(target_temperature, "target_temperature")
        self.target_temperature = target_temperature
        self.symmetric = symmetric
        self.detach_targets = detach_targets

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Loss of predictions ``a`` against targets ``b`` (both ``(B, d)``)."""
        return soft_clip_loss(
            a,
            b,
            temperature=self.tau(),
            target_temperature=self.target_temperature,
            symmetric=self.symmetric,
            detach_targets=self.detach_targets,
            **self.options(),
        )
