"""Contrastive-gap terms: CLIP + uniformity + alignment (CUA), + cross-modal uniformity (CUAXU).

Reference:
    - [0] Fahim, Murphy & Fyshe, "It's Not a Modality Gap: Characterizing and Addressing the
      Contrastive Gap", 2024. The public implementation read (``compute_CUA_loss`` /
      ``compute_CUAXU_loss``) composes open_clip's loss with Wang & Isola's align/uniform.

All terms have weight 1 and act on L2-normalised features::

    L_CUA   = L_CLIP(τ) + ½[unif(I; t) + unif(T; t)] + align(I, T; α)
    L_CUAXU = L_CUA + xunif(I, T; t)
    xunif(I, T; t) = log( 1/(B(B-1)) Σ_{j ≠ k} exp(-t ‖I_j - T_k‖²) )   (matched pairs excluded)
"""

from __future__ import annotations

from torch import Tensor, nn

from contrastkit._checks import check_chunk_size, check_positive, validate_pair
from contrastkit.engine import log_mean_gaussian_potential
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare
from contrastkit.losses.align_uniform import alignment_loss, uniformity_loss
from contrastkit.losses.clip import clip_loss


@full_precision
def cross_modal_uniformity_loss(
    a: Tensor,
    b: Tensor,
    *,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """Cross-modal uniformity: log-mean Gaussian potential over unmatched pairs ``(a_j, b_k)``.

    ::

        xunif(a, b; t) = log( 1/(B(B-1)) Σ_{j ≠ k} exp(-t ‖a_j - b_k‖²) )

    The matched pairs ``j = k`` (the diagonal of the ``B × B`` distance matrix) are excluded.
    A batch-level quantity: no ``reduction`` (as :func:`contrastkit.losses.align_uniform.
    uniformity_loss`). Default ``t = 2``.

    Runs on the similarity engine (:func:`contrastkit.engine.log_mean_gaussian_potential`): the
    Gaussian potential is an inner product of augmented vectors, so the sum is a log-sum-exp
    with the diagonal excluded — exact for normalised and unnormalised inputs, memory ``O(B·d)``
    on the tiled path.

    Args:
        a: ``(B, d)`` first modality, ``B ≥ 2``.
        b: ``(B, d)`` second modality, row-aligned (row ``j`` of ``a`` matches row ``j`` of ``b``).
        t: Gaussian potential scale, ``> 0``.
        normalize: L2-normalise rows first (the reference does).
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check for NaN/inf (a host sync).

    Returns:
        Scalar loss (fp32 for half inputs), ``≤ 0``; lower means the two modalities are
        spread more evenly around each other.

    Raises:
        ValueError: on mismatched shapes, ``B < 2``, non-finite values or ``t ≤ 0``.

    Examples:
        >>> import torch
        >>> image, text = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = cross_modal_uniformity_loss(image, text)
    """
    checks = validate_pair(a, b, normalize=normalize, check_values=check_values)
    check_positive(t, "t")
    check_chunk_size(chunk_size)
    za, zb = prepare(a, normalize), prepare(b, normalize)  # (B, d)
    return checks.verify(log_mean_gaussian_potential(za, zb, t=float(t), chunk_size=chunk_size))


@full_precision
def contrastive_gap_loss(
    a: Tensor,
    b: Tensor,
    *,
    cross_uniformity: bool = True,
    temperature: float | Tensor = 0.01,
    alpha: float = 2.0,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """CLIP loss plus the contrastive-gap terms (CUAXU, or CUA with ``cross_uniformity=False``).

    ::

        L = L_CLIP(τ) + ½[unif(a; t) + unif(b; t)] + align(a, b; α) [+ xunif(a, b; t)]

    with ``a`` the image and ``b`` the text embeddings (the loss is symmetric in them).

    * ``L_CLIP`` — :func:`contrastkit.clip_loss` (symmetric, positive in the denominator, mean
      of the two directions);
    * ``unif`` — Wang & Isola's uniformity within one modality (``log mean_{j<k}``,
      :func:`contrastkit.losses.align_uniform.uniformity_loss`);
    * ``align`` — mean ``‖a_i - b_i‖^α``
      (:func:`contrastkit.losses.align_uniform.alignment_loss`);
    * ``xunif`` — :func:`cross_modal_uniformity_loss` (matched pairs excluded).

    Every weight is 1 (the paper fixes them). A batch-level objective: no ``reduction``.
    Defaults (paper): ``τ = 0.01`` fixed (logit scale 100), ``α = 2``, ``t = 2``.

    Memory: every term is tiled (CLIP and ``xunif`` on the similarity engine, ``unif`` by its
    own online log-sum-exp): ``O(B·d)`` plus tiles.

    Args:
        a: ``(B, d)`` image embeddings, ``B ≥ 2``.
        b: ``(B, d)`` text embeddings, row-aligned.
        cross_uniformity: add ``xunif`` (CUAXU); False gives CUA.
        temperature: CLIP temperature ``τ`` > 0 (the reference passes ``1/τ = 100``).
        alpha: alignment exponent ``α`` > 0.
        t: uniformity scale ``t`` > 0 (in-modal and cross-modal).
        normalize: L2-normalise both modalities first (the reference does, in every term).
        chunk_size: tile size for CLIP, ``unif`` and ``xunif`` (None: automatic).
        check_values: check for NaN/inf (a host sync).

    Returns:
        Scalar loss (fp32 for half inputs).

    Raises:
        ValueError: on mismatched shapes, ``B < 2``, non-finite values, ``τ``, ``α`` or ``t``
            not > 0.

    Peers: no package implements it; the reference composes open_clip's ``ClipLoss`` and
    align/uniform — tested against a float64 transcription of those formulas.

    Examples:
        >>> import torch
        >>> image, text = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = contrastive_gap_loss(image, text)  # CUAXU
    """
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    _check_options(alpha, t)
    check_chunk_size(chunk_size)
    za, zb = prepare(a, normalize), prepare(b, normalize)  # (B, d), normalised once
    off = False  # inputs normalised and checked once, above
    loss = clip_loss(
        za, zb, temperature=temperature, chunk_size=chunk_size, normalize=off, check_values=off
    )
    uniform = 0.5 * (
        uniformity_loss(za, t=t, chunk_size=chunk_size, normalize=off, check_values=off)
        + uniformity_loss(zb, t=t, chunk_size=chunk_size, normalize=off, check_values=off)
    )
    loss = loss + uniform + alignment_loss(za, zb, alpha=alpha, normalize=off, check_values=off)
    if cross_uniformity:
        loss = loss + cross_modal_uniformity_loss(
            za, zb, t=t, chunk_size=chunk_size, normalize=off, check_values=off
        )
    return checks.verify(loss)


def _check_options(alpha: float, t: float) -> None:
    check_positive(alpha, "alpha")
    check_positive(t, "t")


@full_precision
def cua_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.01,
    alpha: float = 2.0,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """CUA: ``L_CLIP + ½[unif(image) + unif(text)] + align(image, text)``.

    :func:`contrastive_gap_loss` with ``cross_uniformity=False`` (``a`` image, ``b`` text); see
    it for the terms.

    Examples:
        >>> import torch
        >>> loss = cua_loss(torch.randn(8, 16), torch.randn(8, 16))
    """
    return contrastive_gap_loss(
        a,
        b,
        cross_uniformity=False,
        temperature=temperature,
        alpha=alpha,
        t=t,
        normalize=normalize,
        chunk_size=chunk_size,
        check_values=check_values,
    )


@full_precision
def cuaxu_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.01,
    alpha: float = 2.0,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """CUAXU: CUA plus cross-modal uniformity over unmatched pairs.

    :func:`contrastive_gap_loss` with ``cross_uniformity=True`` (``a`` image, ``b`` text); see it
    for the terms.

    Examples:
        >>> import torch
        >>> loss = cuaxu_loss(torch.randn(8, 16), torch.randn(8, 16))
    """
    return contrastive_gap_loss(
        a,
        b,
        cross_uniformity=True,
        temperature=temperature,
        alpha=alpha,
        t=t,
        normalize=normalize,
        chunk_size=chunk_size,
        check_values=check_values,
    )


class ContrastiveGapLoss(LossModule):
    """Module wrapper of :func:`contrastive_gap_loss` (CUAXU by default, CUA without ``xunif``).

    Inputs: ``forward(a, b)`` with paired ``(B, d)`` image and text embeddings. Use it instead
    of :class:`CLIPLoss` when fine-tuning an image–text model whose two modalities occupy
    separate regions of the sphere (the "modality" / contrastive gap): the uniformity and
    alignment terms spread and interleave the two modalities at equal retrieval accuracy. The
    temperature is fixed (the paper uses ``τ = 0.01``).

    Args:
        cross_uniformity: include cross-modal uniformity (CUAXU); False gives CUA.
        temperature: fixed CLIP temperature.
        alpha: alignment exponent.
        t: uniformity scale.
        normalize: L2-normalise inputs first.
        chunk_size: tile size (None: automatic).
        check_values: value checks (see :func:`contrastive_gap_loss`).

    Examples:
        >>> import torch
        >>> loss_fn = ContrastiveGapLoss(cross_uniformity=False)  # CUA
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(
        self,
        *,
        cross_uniformity: bool = True,
        temperature: float | Tensor | nn.Module = 0.01,
        alpha: float = 2.0,
        t: float = 2.0,
        normalize: bool = True,
        chunk_size: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            chunk_size=chunk_size,
            check_values=check_values,
        )
        _check_options(alpha, t)
        self.cross_uniformity = cross_uniformity
        self.alpha = alpha
        self.t = t

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Loss of paired ``(B, d)`` image embeddings ``a`` and text embeddings ``b``."""
        return contrastive_gap_loss(
            a,
            b,
            cross_uniformity=self.cross_uniformity,
            temperature=self.tau(),
            alpha=self.alpha,
            t=self.t,
            **self.options(),
        )
