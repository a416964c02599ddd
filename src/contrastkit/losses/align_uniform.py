"""Alignment and uniformity losses on the hypersphere (Wang & Isola, ICML 2020).

``alignment_loss`` pulls positive pairs together, ``uniformity_loss`` spreads a batch over the
sphere (log of the mean Gaussian potential over all unordered pairs), and ``AlignUniformLoss``
combines them as in the reference training script::

    L = align_weight · align(a, b; α) + unif_weight · (unif(a; t) + unif(b; t)) / 2

Uniformity runs on the similarity engine (see :func:`log_mean_gaussian_potential`), so its extra
memory is ``O(B·d)`` on the tiled path, never ``O(B²)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit._checks import (
    Reduction,
    check_chunk_size,
    check_non_negative,
    check_positive,
    check_reduction,
    reduce,
    validate_embeddings,
    validate_pair,
)
from contrastkit.engine import log_mean_gaussian_potential
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare


@full_precision
def alignment_loss(
    a: Tensor,
    b: Tensor,
    *,
    alpha: float = 2.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""Alignment loss: mean distance between positive pairs raised to the power ``alpha``.

    .. math::
        \mathcal{L}_\text{align} = \frac{1}{B} \sum_i \lVert a_i - b_i \rVert_2^{\alpha}

    No negatives are involved (there is no denominator). Defaults follow Wang & Isola (2020),
    ``alpha=2``. The reference functions (``SsnL/align_uniform``) expect already-normalised inputs;
    ``normalize=True`` (the default here, as in lightly's ``HypersphereLoss``) normalises inside,
    ``normalize=False`` reproduces the reference on raw inputs.

    Args:
        a: ``(B, d)`` first view; row ``i`` is paired with row ``i`` of ``b``.
        b: ``(B, d)`` second view.
        alpha: Power applied to the Euclidean distance, ``> 0``.
        normalize: L2-normalise ``a`` and ``b`` first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)`` one value per pair).
        check_values: Check for NaN/inf (one host sync).

    Returns:
        The loss, in fp32 for fp16/bf16 inputs.

    Raises:
        ValueError: On bad shapes or dtypes, non-finite values, or ``alpha <= 0``.

    Example:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> alignment_loss(a, b).shape
        torch.Size([])
    """
    checks = validate_pair(a, b, min_rows=1, normalize=normalize, check_values=check_values)
    check_positive(alpha, "alpha")
    check_reduction(reduction)
    return checks.verify(_alignment(prepare(a, normalize), prepare(b, normalize), alpha, reduction))


def _alignment(a: Tensor, b: Tensor, alpha: float, reduction: Reduction) -> Tensor:
    """Alignment of prepared inputs."""
    squared = (a - b).pow(2).sum(dim=-1)  # (B,) ‖a_i - b_i‖², smooth at a_i == b_i
    if alpha == 2:
        return reduce(squared, reduction)
    # ‖·‖^α = (‖·‖²)^(α/2); at a_i == b_i the value is 0 with gradient 0 (not 0 · inf = NaN).
    tiny = torch.finfo(squared.dtype).tiny
    powered = squared.clamp_min(tiny).pow(alpha / 2)
    return reduce(torch.where(squared > 0, powered, torch.zeros_like(powered)), reduction)


@full_precision
def uniformity_loss(
    x: Tensor,
    *,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    r"""Uniformity loss: log of the mean Gaussian potential over all unordered pairs.

    .. math::
        \mathcal{L}_\text{uniform} = \log \frac{2}{B(B-1)}
            \sum_{i<j} e^{-t \lVert x_i - x_j \rVert_2^2}

    Exactly ``torch.pdist(x).pow(2).mul(-t).exp().mean().log()`` of the reference code: unordered
    pairs ``i < j`` only, no diagonal. It is a batch-level quantity, so there is no ``reduction``
    (departure from the conventions). Default ``t=2`` (Wang & Isola 2020); lightly's
    ``HypersphereLoss`` defaults to ``t=1`` with the same formula.

    Memory: runs on the similarity engine (:func:`log_mean_gaussian_potential`), so extra
    memory is ``O(B·d)`` on the tiled path. Time is ``O(B²·d)``.

    Args:
        x: ``(B, d)`` embeddings, ``B >= 2``.
        t: Gaussian potential scale, ``> 0``.
        normalize: L2-normalise rows first (the reference expects normalised inputs).
        chunk_size: Engine tile size; ``None`` picks dense or tiled automatically.
        check_values: Check for NaN/inf (one host sync).

    Returns:
        Scalar loss (fp32 for fp16/bf16 inputs). ``≤ 0``; ``-4t`` at best on the unit sphere.

    Raises:
        ValueError: On bad shapes or dtypes, non-finite values, ``B < 2``, ``t <= 0`` or a bad
            ``chunk_size``.

    Example:
        >>> uniformity_loss(torch.randn(32, 8)).item() < 0
        True
    """
    checks = validate_embeddings(x, "x", min_rows=2, normalize=normalize, check_values=check_values)
    check_positive(t, "t")
    check_chunk_size(chunk_size)
    return checks.verify(
        log_mean_gaussian_potential(prepare(x, normalize), t=float(t), chunk_size=chunk_size)
    )


@full_precision
def align_uniform_loss(
    a: Tensor,
    b: Tensor,
    *,
    align_weight: float = 1.0,
    unif_weight: float = 1.0,
    alpha: float = 2.0,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    r"""Combined objective of Wang & Isola's training script.

    .. math::
        \mathcal{L} = w_a\,\mathcal{L}_\text{align}(a, b; \alpha)
            + w_u\,\tfrac{1}{2}\big(\mathcal{L}_\text{uniform}(a; t)
            + \mathcal{L}_\text{uniform}(b; t)\big)

    The uniformity of the two views is averaged, not computed on their concatenation. Alignment
    uses ``reduction='mean'``. Defaults ``align_weight = unif_weight = 1, alpha = t = 2``
    (``SsnL/align_uniform`` ``examples/stl10/main.py``).

    lightly's ``HypersphereLoss(t, lam, alpha)`` equals this with ``align_weight=1``,
    ``unif_weight=lam``, the same ``t`` and ``alpha`` and ``normalize=True``; its defaults
    (``t=1.0``) differ from the paper's, so pass ``t=1.0`` here (or ``t=2.0`` there) to compare.

    Args:
        a: ``(B, d)`` first view, ``B >= 2``.
        b: ``(B, d)`` second view.
        align_weight: Weight of the alignment term, ``>= 0``.
        unif_weight: Weight of the uniformity term, ``>= 0``.
        alpha: Alignment power, ``> 0``.
        t: Uniformity scale, ``> 0``.
        normalize: L2-normalise inputs first.
        chunk_size: Uniformity row tile (see :func:`uniformity_loss`).
        check_values: Check for NaN/inf (one host sync).

    Returns:
        Scalar loss.

    Raises:
        ValueError: On bad inputs or hyper-parameters (naming the argument).

    Example:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> align_uniform_loss(a, b).shape
        torch.Size([])
    """
    checks = validate_pair(a, b, normalize=normalize, check_values=check_values)
    _check_options(align_weight, unif_weight, alpha, t)
    check_chunk_size(chunk_size)
    za, zb = prepare(a, normalize), prepare(b, normalize)
    align = _alignment(za, zb, alpha, "mean")
    unif_a = log_mean_gaussian_potential(za, t=float(t), chunk_size=chunk_size)
    unif_b = log_mean_gaussian_potential(zb, t=float(t), chunk_size=chunk_size)
    return checks.verify(align_weight * align + unif_weight * (unif_a + unif_b) / 2)


def _check_options(align_weight: float, unif_weight: float, alpha: float, t: float) -> None:
    check_non_negative(align_weight, "align_weight")
    check_non_negative(unif_weight, "unif_weight")
    check_positive(alpha, "alpha")
    check_positive(t, "t")


class AlignUniformLoss(LossModule):
    """Alignment + uniformity loss of Wang & Isola (2020); wraps :func:`align_uniform_loss`.

    ``L = align_weight·align(a, b; alpha) + unif_weight·(unif(a; t) + unif(b; t))/2``; see the
    function for the formula, memory and the conversion from lightly's ``HypersphereLoss``
    (``HypersphereLoss(t=1.0, lam=1.0)`` == ``AlignUniformLoss(t=1.0)``).

    Reference: T. Wang and P. Isola, "Understanding Contrastive Representation Learning through
    Alignment and Uniformity on the Hypersphere", ICML 2020. https://arxiv.org/abs/2005.10242

    Example:
        >>> loss_fn = AlignUniformLoss()
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(a, b)
    """

    def __init__(
        self,
        *,
        align_weight: float = 1.0,
        unif_weight: float = 1.0,
        alpha: float = 2.0,
        t: float = 2.0,
        normalize: bool = True,
        chunk_size: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(normalize=normalize, chunk_size=chunk_size, check_values=check_values)
        _check_options(align_weight, unif_weight, alpha, t)
        self.align_weight = align_weight
        self.unif_weight = unif_weight
        self.alpha = alpha
        self.t = t

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Compute the loss for two ``(B, d)`` views whose rows are paired."""
        return align_uniform_loss(
            a,  # (B, d)
            b,  # (B, d)
            align_weight=self.align_weight,
            unif_weight=self.unif_weight,
            alpha=self.alpha,
            t=self.t,
            **self.options(),
        )
