r"""Hardness profile: how much gradient weight each negative gets at a given temperature.

Wang & Liu (CVPR 2021, Eq. 4-5) show that for the InfoNCE loss the gradient on negative ``j`` of
anchor ``i`` is proportional to the relative penalty

.. math:: r_i(s_{ij}) = \frac{\exp(s_{ij}/\tau)}{\sum_{k \ne i} \exp(s_{ik}/\tau)}

(the sum runs over the negatives of anchor ``i``), a Boltzmann distribution whose entropy falls as
``tau`` falls: small temperatures concentrate the gradient on the hardest negatives.

References:
    [1] F. Wang, H. Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021.
        https://arxiv.org/abs/2012.09740

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit._checks import check_positive
from contrastkit.metrics._common import check_int


@dataclass(frozen=True)
class HardnessProfile:
    """Relative negative weights at one temperature.

    Attributes:
        temperature: the ``tau`` used.
        weights: ``(n, m)`` float64, ``r_i(s_ij)`` on negatives, 0 elsewhere; rows sum to 1.
        entropy: mean over anchors of the entropy of ``r_i`` (nats).
        effective_negatives: mean over anchors of ``exp(entropy_i)``: how many negatives
            effectively receive gradient (equals the number of negatives when all weights match).
        top1_weight: mean over anchors of the largest weight (1 = only the hardest negative counts).
        num_negatives: mean number of negatives per anchor.

    """

    temperature: float
    weights: Tensor
    entropy: float
    effective_negatives: float
    top1_weight: float
    num_negatives: float


def _negatives(similarities: Tensor, negative_mask: Tensor | None, check_values: bool) -> Tensor:
    if not isinstance(similarities, Tensor) or similarities.ndim != 2:
        raise ValueError("similarities must be a (n, m) tensor")
    if not similarities.is_floating_point():
        raise ValueError(f"similarities must be floating point, got {similarities.dtype}")
    n, m = similarities.shape
    if negative_mask is None:
        if n != m:
            raise ValueError(
                f"negative_mask is required for a non-square similarity matrix, got ({n}, {m})"
            )
        negative_mask = ~torch.eye(n, dtype=torch.bool, device=similarities.device)
    if negative_mask.shape != similarities.shape or negative_mask.dtype != torch.bool:
        raise ValueError(
            f"negative_mask must be a bool tensor of shape ({n}, {m}), "
            f"got {negative_mask.dtype} {tuple(negative_mask.shape)}"
        )
    if check_values:
        if not bool(torch.isfinite(similarities).all()):
            raise ValueError("similarities contains NaN or inf values")
        if not bool(negative_mask.any(dim=1).all()):
            row = int(torch.nonzero(~negative_mask.any(dim=1))[0, 0])
            raise ValueError(f"negative_mask: anchor {row} has no negative")
    return negative_mask


def hardness_profile(
    similarities: Tensor,
    temperature: float,
    *,
    negative_mask: Tensor | None = None,
    check_values: bool = True,
) -> HardnessProfile:
    r"""Relative gradient weight :math:`r_i(s_{ij})` of every negative at temperature ``tau``.

    Args:
        similarities: ``(n, m)`` similarity matrix (anchors x candidates).
        temperature: ``tau > 0``.
        negative_mask: ``(n, m)`` bool, True where ``j`` is a negative of anchor ``i``. Default for
            a square matrix: every off-diagonal entry (the diagonal holds the positives).
        check_values: check for NaN/inf and anchors without negatives (host sync).

    Returns:
        A :class:`HardnessProfile`.

    Raises:
        ValueError: bad shapes, ``temperature <= 0``, non-finite values, an anchor without
            negatives.

    Example:
        >>> s = torch.tensor([[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]])
        >>> hardness_profile(s, 0.1).effective_negatives  # equal negatives: both count
        2.0

    """
    check_positive(temperature, "temperature")
    mask = _negatives(similarities, negative_mask, check_values)
    logits = (similarities.detach().double() / temperature).masked_fill(~mask, -math.inf)
    logw = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (n, m)
    w = logw.exp().masked_fill(~mask, 0.0)
    ent = -(w * logw.masked_fill(~mask, 0.0)).sum(dim=1)  # (n,)
    return HardnessProfile(
        temperature=float(temperature),
        weights=w,
        entropy=float(ent.mean()),
        effective_negatives=float(ent.exp().mean()),
        top1_weight=float(w.amax(dim=1).mean()),
        num_negatives=float(mask.sum(dim=1).double().mean()),
    )


def temperature_sweep(
    similarities: Tensor,
    temperatures: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
    *,
    negative_mask: Tensor | None = None,
    check_values: bool = True,
) -> list[HardnessProfile]:
    """:func:`hardness_profile` at several temperatures (same matrix, same negatives).

    Args:
        similarities: ``(n, m)`` similarity matrix.
        temperatures: the ``tau`` values to sweep.
        negative_mask: see :func:`hardness_profile`.
        check_values: check for NaN/inf (host sync, done once).

    Returns:
        One :class:`HardnessProfile` per temperature, in the given order.

    Raises:
        ValueError: empty ``temperatures`` or any invalid input.

    Example:
        >>> s = torch.randn(8, 8)
        >>> [round(p.temperature, 2) for p in temperature_sweep(s, [0.1, 1.0])]
        [0.1, 1.0]

    """
    if len(temperatures) == 0:
        raise ValueError("temperatures must not be empty")
    mask = _negatives(similarities, negative_mask, check_values)
    return [
        hardness_profile(similarities, t, negative_mask=mask, check_values=False)
        for t in temperatures
    ]


def hardness_curve(
    profile: HardnessProfile,
    similarities: Tensor,
    *,
    bins: int = 40,
    negative_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean relative weight versus negative similarity, for plotting.

    The weight is reported relative to uniform: ``num_negatives_i * r_i(s_ij)`` (1 means "the
    weight this negative would get if every negative counted the same"). Negatives are binned by
    similarity into ``bins`` equal-width bins over their observed range; empty bins are dropped.

    Args:
        profile: output of :func:`hardness_profile` for ``similarities``.
        similarities: the ``(n, m)`` matrix the profile was computed from.
        bins: number of bins.
        negative_mask: the mask the profile was computed with (default: off-diagonal).

    Returns:
        ``(bin_centres, mean_relative_weight)``, two float64 tensors of equal length.

    Raises:
        ValueError: shapes do not match the profile.

    Example:
        >>> s = torch.randn(6, 6)
        >>> x, y = hardness_curve(hardness_profile(s, 0.5), s, bins=5)
        >>> len(x) == len(y)
        True

    """
    check_int(bins, "bins")
    if profile.weights.shape != similarities.shape:
        raise ValueError("similarities must be the matrix the profile was computed from")
    mask = _negatives(similarities, negative_mask, check_values=False)
    rel = profile.weights * mask.sum(dim=1, keepdim=True).double()
    s = similarities.detach().double()[mask]
    r = rel[mask]
    lo, hi = float(s.min()), float(s.max())
    width = (hi - lo) / bins if hi > lo else 1.0
    idx = ((s - lo) / width).floor().long().clamp(0, bins - 1)
    count = torch.bincount(idx, minlength=bins).double()
    total = torch.bincount(idx, weights=r, minlength=bins)
    keep = count > 0
    centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * width
    return centres[keep], total[keep] / count[keep]
