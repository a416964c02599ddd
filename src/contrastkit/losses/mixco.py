"""MixCo: InfoNCE of mixed rows against soft mixup targets (M3CoL, MindEye's BiMixCo).

A cross-entropy of the softmax over ``s_ij = <a_i, b_j> / τ`` against *soft* targets: each row of
``a`` is mixed with a permuted partner, and the target of the mixed row puts ``λ_i`` on its own
pair and ``1 - λ_i`` on its partner's. :mod:`contrastkit.losses.soft_clip` is M3CoL's other
soft-target term.

References:
    - [0] Kim et al., "MixCo: Mix-up Contrastive Learning for Visual Representation", 2020.
    - [1] Scotti et al., "Reconstructing the Mind's Eye" (MindEye, BiMixCo + SoftCLIP), 2023.
    - [2] Kumar et al., "Multimodal Contrastive Learning with Mixup" (M3CoL), TMLR 2025.
      ``RaghavSinghal10/M3CoL`` ``model/utils.py`` (``mixco_nce``, ``soft_clip_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_positive,
    check_reduction,
    reduce,
    validate_pair,
)
from contrastkit.engine import TilePairs, pairwise_lse
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.losses._sampling import sample_beta


@dataclass(frozen=True)
class MixCoBatch:
    """Output of :func:`mixco_mix`.

    Attributes:
        mixed: ``(B, ...)`` rows ``λ_i x_i + (1 - λ_i) x_perm(i)``.
        perm: ``(B,)`` int64 partner of each row.
        lambdas: ``(B,)`` mixing coefficients; 1 for rows that were not selected for mixing.
    """

    mixed: Tensor
    perm: Tensor
    lambdas: Tensor


def mixco_mix(
    x: Tensor,
    *,
    beta: float = 0.15,
    s_thresh: float = 0.5,
    generator: torch.Generator | None = None,
) -> MixCoBatch:
    """Mix each row of ``x`` with a random partner, with probability ``s_thresh``.

    ``x̃_i = λ_i x_i + (1 - λ_i) x_perm(i)`` with ``perm`` a uniform permutation,
    ``λ_i ~ Beta(beta, beta)`` for the selected rows and ``λ_i = 1`` (no mixing) otherwise. The
    input is not modified (M3CoL mixes a ``.clone()`` in place). Draw order from ``generator``:
    ``perm``, ``λ`` (all ``B``), then the selection ``U_i ≤ s_thresh``.

    Args:
        x: ``(B, ...)`` rows to mix (M3CoL: the CLS embeddings, before the loss normalises them).
        beta: concentration of the symmetric Beta (M3CoL / MindEye: 0.15).
        s_thresh: probability that a row is mixed (M3CoL: 0.5).
        generator: RNG for every draw; None uses torch's global RNG.

    Returns:
        :class:`MixCoBatch` ``(mixed, perm, lambdas)``.

    Raises:
        ValueError: on a non-floating or empty ``x``, ``beta ≤ 0`` or ``s_thresh`` outside [0, 1].

    Examples:
        >>> batch = mixco_mix(torch.randn(8, 16), generator=torch.Generator().manual_seed(0))
        >>> batch.mixed.shape, batch.perm.shape
        (torch.Size([8, 16]), torch.Size([8]))
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] < 1:
        raise ValueError("x must be a non-empty floating-point tensor of shape (B, ...)")
    _check_mix_options(beta, s_thresh)
    batch = x.shape[0]
    draw_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(batch, generator=generator, device=draw_device).to(x.device)
    lambdas = sample_beta(beta, beta, (batch,), generator=generator, dtype=x.dtype)
    select = torch.rand(batch, generator=generator, device=draw_device) <= s_thresh
    lambdas = torch.where(select, lambdas, torch.ones_like(lambdas)).to(x.device)
    lam = lambdas.reshape(-1, *([1] * (x.ndim - 1)))
    mixed = lam * x + (1.0 - lam) * x[perm]  # (B, ...)
    return MixCoBatch(mixed=mixed, perm=perm, lambdas=lambdas)


@dataclass(frozen=True)
class MixCoTargets:
    """Pair rule of the MixCo soft targets ``P_ij = λ_i [j = i] + (1 - λ_i) [j = perm(i)]``.

    A valid :class:`contrastkit.engine.PairRule`: the engine asks it for one tile at a time, so
    ``P`` is never built as a ``B × B`` matrix. When ``perm(i) = i`` the two terms add to 1.

    Attributes:
        lambdas: ``(B,)`` mixing coefficients of the rows.
        perm: ``(B,)`` partner of each row.
    """

    lambdas: Tensor
    perm: Tensor

    @property
    def has_weights(self) -> bool:
        """Always True: the targets are the weights."""
        return True

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Targets of the tile ``S[rows, cols]``."""
        row_idx = torch.arange(self.lambdas.shape[0], device=self.lambdas.device)[rows]
        col_idx = torch.arange(self.perm.shape[0], device=self.perm.device)[cols]
        lam = self.lambdas[rows, None]  # (r, 1)
        own = (row_idx[:, None] == col_idx[None, :]).to(lam.dtype)  # (r, c)
        partner = (self.perm[rows, None] == col_idx[None, :]).to(lam.dtype)  # (r, c)
        return TilePairs(weight=lam * own + (1.0 - lam) * partner)


def soft_cross_entropy(
    lse: Tensor, weighted_sum: Tensor | None, weight_total: Tensor | None
) -> Tensor:
    """``-Σ_j P_ij log softmax(s_i)_j = (Σ_j P_ij) lse_i - Σ_j P_ij s_ij``."""
    assert weighted_sum is not None and weight_total is not None
    return weight_total * lse - weighted_sum


@full_precision
def mixco_loss(
    a: Tensor,
    b: Tensor,
    *,
    perm: Tensor | None = None,
    lambdas: Tensor | None = None,
    beta: float = 0.15,
    s_thresh: float = 0.5,
    generator: torch.Generator | None = None,
    temperature: float | Tensor = 0.1,
    symmetric: bool = True,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """MixCo NCE (BiMixCo): InfoNCE of mixed rows against soft mix targets.

    With ``x̃_i = λ_i a_i + (1 - λ_i) a_perm(i)`` (see :func:`mixco_mix`),
    ``s_ij = <x̃_i, b_j> / τ`` (both L2-normalised) and targets
    ``P_ij = λ_i [j = i] + (1 - λ_i) [j = perm(i)]``::

        ℓ_i^{a→b} = -Σ_j P_ij log softmax_j(s_i·)           (rows of P sum to 1)
        ℓ_j^{b→a} = -Σ_i P_ij log softmax_i(s_·j)           (column j of P)

    Every candidate is in the denominator. ``symmetric=True`` returns
    ``(ℓ_i^{a→b} + ℓ_i^{b→a}) / 2`` per index (M3CoL / MindEye ``bidirectional=True``: the mean
    of the two directions). Note the column targets are ``P``'s columns, which sum to
    ``λ_j + 1 - λ_{perm⁻¹(j)}``, not to 1 — as in the reference.

    If ``perm`` and ``lambdas`` are None, ``a`` is mixed here by :func:`mixco_mix` (embedding-level
    mixing, as M3CoL does on the CLS features) with ``beta``, ``s_thresh`` and ``generator``;
    if both are given, ``a`` is taken as already mixed with them (e.g. mixed at the input, as in
    MixCo/MindEye). With every ``λ_i = 1`` this is :func:`contrastkit.info_nce` (symmetric: CLIP).

    Memory: runs on the similarity engine; the targets are expanded per tile from
    ``(lambdas, perm)`` (:class:`MixCoTargets`), so the tiled path is ``O(B·d)``.

    Defaults (M3CoL ``mixco_nce``/``mixco_text``): ``τ = 0.1``, ``beta = 0.15``,
    ``s_thresh = 0.5``; M3CoL sums the text-mixed and image-mixed terms and weights them by
    ``lambda_mixup = 0.1`` (a recipe choice left to the caller). MindEye uses ``τ = 0.006``.

    Args:
        a: ``(B, d)`` rows to mix (or already mixed, with ``perm``/``lambdas``).
        b: ``(B, d)`` the other modality, row-aligned with ``a`` before mixing.
        perm: ``(B,)`` int permutation used to mix ``a`` (with ``lambdas``), or None.
        lambdas: ``(B,)`` coefficients in ``[0, 1]`` used to mix ``a`` (with ``perm``), or None.
        beta: Beta concentration when mixing here.
        s_thresh: probability that a row is mixed when mixing here.
        generator: RNG when mixing here (None: torch's global RNG).
        temperature: ``τ`` > 0, float or scalar tensor.
        symmetric: average the a→b and b→a directions.
        normalize: L2-normalise ``x̃`` and ``b``.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)``).
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check NaN/inf, that ``perm`` is a permutation and ``lambdas`` in [0, 1].

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on bad shapes, only one of ``perm``/``lambdas``, a ``perm`` that is not a
            permutation, ``lambdas`` outside [0, 1], non-finite values or ``τ ≤ 0``.

    Peers: no package implements it; equals M3CoL's ``mixco_nce(x̃, b, temp=τ, perm, betas)``
    (tested against a transcription), except when ``perm(i) = i`` for a mixed row: the reference
    then overwrites the target ``P_ii = λ_i`` with ``1 - λ_i``, here ``P_ii = 1`` (``x̃_i = a_i``).

    Examples:
        >>> img, txt = torch.randn(8, 32), torch.randn(8, 32)
        >>> loss = mixco_loss(img, txt, generator=torch.Generator().manual_seed(0))
    """
    if (perm is None) != (lambdas is None):
        raise ValueError("perm and lambdas must be given together (or both None to mix here)")
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    _check_mix_options(beta, s_thresh)
    if perm is None or lambdas is None:
        mixed = mixco_mix(a, beta=beta, s_thresh=s_thresh, generator=generator)
        a, perm, lambdas = mixed.mixed, mixed.perm, mixed.lambdas
    else:
        _check_mix_spec(perm, lambdas, a.shape[0], checks)

    za, zb = prepare(a, normalize), prepare(b, normalize)  # (B, d)
    targets = MixCoTargets(lambdas=lambdas.detach().to(za.dtype), perm=perm.to(za.device))
    stats = pairwise_lse(
        scale_by_temperature(za, temperature),
        zb,
        targets,
        rows=True,
        columns=symmetric,
        chunk_size=chunk_size,
    )
    assert stats.rows is not None
    losses = soft_cross_entropy(
        stats.rows.lse, stats.rows.weighted_sum, stats.rows.weight_total
    )  # (B,)
    if symmetric:
        cols = stats.columns
        assert cols is not None
        losses = 0.5 * (losses + soft_cross_entropy(cols.lse, cols.weighted_sum, cols.weight_total))
    return checks.verify(reduce(losses, reduction))


def _check_mix_options(beta: float, s_thresh: float) -> None:
    check_positive(beta, "beta")
    if (
        not isinstance(s_thresh, (int, float))
        or isinstance(s_thresh, bool)
        or not 0.0 <= s_thresh <= 1.0
    ):
        raise ValueError(f"s_thresh must be a probability in [0, 1], got {s_thresh!r}")


def _check_mix_spec(perm: Tensor, lambdas: Tensor, batch: int, checks: ValueChecks) -> None:
    if not isinstance(perm, Tensor) or perm.shape != (batch,) or perm.is_floating_point():
        raise ValueError(f"perm must be an integer tensor of shape ({batch},)")
    if not isinstance(lambdas, Tensor) or lambdas.shape != (batch,):
        raise ValueError(f"lambdas must be a tensor of shape ({batch},)")
    if not lambdas.is_floating_point():
        raise ValueError(f"lambdas must be floating point, got dtype {lambdas.dtype}")
    arange = torch.arange(batch, device=perm.device)
    checks.require((perm.sort().values == arange).all(), "perm must be a permutation of 0..B-1")
    checks.require(((lambdas >= 0) & (lambdas <= 1)).all(), "lambdas must lie in [0, 1]")


class MixCoLoss(LossModule):
    """Module wrapper of :func:`mixco_loss`; see it for the formula and conventions.

    Inputs: ``forward(a, b, perm=None, lambdas=None, generator=None)``. Use it as the
    mixup-contrastive regulariser between two modalities (M3CoL, MindEye's BiMixCo): call it
    once with the text mixed and once with the image mixed and add the two. Its soft targets
    make it a regularised :class:`CLIPLoss`; :class:`SoftCLIPLoss` is the later-phase partner.

    Examples:
        >>> loss_fn = MixCoLoss(temperature=0.1)
        >>> loss = loss_fn(torch.randn(8, 32), torch.randn(8, 32))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.1,
        beta: float = 0.15,
        s_thresh: float = 0.5,
        symmetric: bool = True,
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
        _check_mix_options(beta, s_thresh)
        self.beta = beta
        self.s_thresh = s_thresh
        self.symmetric = symmetric

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        perm: Tensor | None = None,
        lambdas: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss of ``(B, d)`` rows ``a`` (mixed here unless ``perm``/``lambdas``) against ``b``."""
        return mixco_loss(
            a,
            b,
            perm=perm,
            lambdas=lambdas,
            generator=generator,
            beta=self.beta,
            s_thresh=self.s_thresh,
            temperature=self.tau(),
            symmetric=self.symmetric,
            **self.options(),
        )
