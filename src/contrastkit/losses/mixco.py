"""MixCo and SoftCLIP: the soft-target contrastive terms of M3CoL (and MindEye).

Both are a cross-entropy of the softmax over ``s_ij = <a_i, b_j> / τ`` against *soft* targets:

* **MixCo** mixes each row of ``a`` with a permuted partner; the target of the mixed row puts
  ``λ_i`` on its own pair and ``1 - λ_i`` on its partner's.
* **SoftCLIP** takes the targets from the similarities of the target modality itself,
  ``softmax(<b_i, b_j> / τ_t)``.

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
    check_embeddings,
    check_pair,
    check_positive,
    check_reduction,
    reduce,
)
from contrastkit.engine import TilePairs, pairwise_lse, safe_logsumexp
from contrastkit.losses._common import prepare, scale_by_temperature, validate_temperature


def sample_beta(
    concentration1: float,
    concentration0: float,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``Beta(concentration1, concentration0)`` samples from an explicit generator.

    ``torch.distributions.Beta`` cannot take a generator; this draws the same distribution
    (as a 2-component Dirichlet, in float64) from ``generator`` so that runs are reproducible
    without touching the global RNG. Samples are drawn on the generator's device (CPU when
    ``generator`` is None) and moved to ``device``.

    Args:
        concentration1: ``a > 0`` (weight on the first component; the mean is ``a / (a + b)``).
        concentration0: ``b > 0``.
        shape: output shape.
        generator: RNG; None uses torch's global RNG.
        device: device of the result (default: the generator's device).
        dtype: dtype of the result.

    Returns:
        Samples in ``[0, 1]`` of shape ``shape``.

    Raises:
        ValueError: if a concentration is not a finite number > 0.

    Examples:
        >>> lam = sample_beta(2.0, 2.0, (4,), generator=torch.Generator().manual_seed(0))
    """
    check_positive(concentration1, "concentration1")
    check_positive(concentration0, "concentration0")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    conc = torch.tensor([concentration1, concentration0], dtype=torch.float64, device=draw_device)
    conc = conc.expand(*shape, 2).contiguous()
    sample = torch._sample_dirichlet(conc, generator=generator)[..., 0]
    return sample.to(device=device if device is not None else draw_device, dtype=dtype)


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
    check_positive(beta, "beta")
    if not isinstance(s_thresh, (int, float)) or not 0.0 <= s_thresh <= 1.0:
        raise ValueError(f"s_thresh must be a probability in [0, 1], got {s_thresh!r}")
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


def _soft_ce(lse: Tensor, weighted_sum: Tensor | None, weight_total: Tensor | None) -> Tensor:
    """``-Σ_j P_ij log softmax(s_i)_j = (Σ_j P_ij) lse_i - Σ_j P_ij s_ij``."""
    assert weighted_sum is not None and weight_total is not None
    return weight_total * lse - weighted_sum


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
    check_embeddings(a, "a", min_rows=2, check_finite=check_values)
    check_embeddings(b, "b", check_finite=check_values)
    check_pair(a, b)
    check_reduction(reduction)
    if check_values:
        validate_temperature(temperature)
    if perm is None or lambdas is None:
        mixed = mixco_mix(a, beta=beta, s_thresh=s_thresh, generator=generator)
        a, perm, lambdas = mixed.mixed, mixed.perm, mixed.lambdas
    else:
        _check_mix_spec(perm, lambdas, a.shape[0], check_values)

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
    losses = _soft_ce(stats.rows.lse, stats.rows.weighted_sum, stats.rows.weight_total)  # (B,)
    if symmetric:
        cols = stats.columns
        assert cols is not None
        losses = 0.5 * (losses + _soft_ce(cols.lse, cols.weighted_sum, cols.weight_total))
    return reduce(losses, reduction)


def _check_mix_spec(perm: Tensor, lambdas: Tensor, batch: int, check_values: bool) -> None:
    if not isinstance(perm, Tensor) or perm.shape != (batch,) or perm.is_floating_point():
        raise ValueError(f"perm must be an integer tensor of shape ({batch},)")
    if not isinstance(lambdas, Tensor) or lambdas.shape != (batch,):
        raise ValueError(f"lambdas must be a tensor of shape ({batch},)")
    if not lambdas.is_floating_point():
        raise ValueError(f"lambdas must be floating point, got dtype {lambdas.dtype}")
    if check_values:
        if not torch.equal(perm.sort().values.cpu(), torch.arange(batch)):
            raise ValueError("perm must be a permutation of 0..B-1")
        if not bool(((lambdas >= 0) & (lambdas <= 1)).all()):
            raise ValueError("lambdas must lie in [0, 1]")


@dataclass(frozen=True)
class SoftTargets:
    """Pair rule of SoftCLIP targets ``T_ij = exp(<k_i, k_j>/τ_t - lse_i)`` (row softmax).

    Attributes:
        keys: ``(n, k)`` target-modality embeddings (no gradient), already divided by nothing.
        col_keys: ``(m, k)`` keys of the candidates.
        row_lse: ``(n,)`` ``log Σ_j exp(<k_i, col_keys_j>/τ_t)``, the row normaliser.
        inverse_temperature: ``1 / τ_t``.
    """

    keys: Tensor
    col_keys: Tensor
    row_lse: Tensor
    inverse_temperature: float

    @property
    def has_weights(self) -> bool:
        """Always True: the targets are the weights."""
        return True

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Soft targets of the tile ``S[rows, cols]``."""
        logits = (self.keys[rows] @ self.col_keys[cols].T) * self.inverse_temperature
        return TilePairs(weight=torch.exp(logits - self.row_lse[rows, None]))


def soft_clip_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float = 0.125,
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
    check_embeddings(a, "a", min_rows=2, check_finite=check_values)
    check_embeddings(b, "b", check_finite=check_values)
    check_pair(a, b)
    check_reduction(reduction)
    check_positive(temperature, "temperature")
    tau_t = temperature if target_temperature is None else target_temperature
    check_positive(tau_t, "target_temperature")

    za, zb = prepare(a, normalize), prepare(b, normalize)  # (B, d)
    if detach_targets:
        losses = _soft_clip_engine(za, zb, temperature, tau_t, symmetric, chunk_size)
    else:
        losses = _soft_clip_dense(za, zb, temperature, tau_t, symmetric)
    return reduce(losses, reduction)


def _soft_clip_engine(
    za: Tensor, zb: Tensor, tau: float, tau_t: float, symmetric: bool, chunk_size: int | None
) -> Tensor:
    keys = zb.detach()  # (B, d) frozen targets
    with torch.no_grad():
        norm = pairwise_lse(keys / tau_t, keys, chunk_size=chunk_size).rows
        assert norm is not None
    targets = SoftTargets(keys=keys, col_keys=keys, row_lse=norm.lse, inverse_temperature=1 / tau_t)
    rows = pairwise_lse(za / tau, zb, targets, chunk_size=chunk_size).rows
    assert rows is not None
    losses = _soft_ce(rows.lse, rows.weighted_sum, rows.weight_total)  # (B,)
    if symmetric:
        # b→a: rows are b_j, candidates a_i, targets T_ji (row j of T) — the same rule.
        cols = pairwise_lse(zb / tau, za, targets, chunk_size=chunk_size).rows
        assert cols is not None
        losses = 0.5 * (losses + _soft_ce(cols.lse, cols.weighted_sum, cols.weight_total))
    return losses


def _soft_clip_dense(za: Tensor, zb: Tensor, tau: float, tau_t: float, symmetric: bool) -> Tensor:
    logits = za @ zb.T / tau  # (B, B)
    targets = torch.softmax(zb @ zb.T / tau_t, dim=1)  # (B, B), rows sum to 1, with gradient
    losses = safe_logsumexp(logits, 1) - (targets * logits).sum(1)
    if symmetric:
        losses = 0.5 * (losses + safe_logsumexp(logits, 0) - (targets * logits.T).sum(1))
    return losses


class MixCoLoss(nn.Module):
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
        temperature: float = 0.1,
        beta: float = 0.15,
        s_thresh: float = 0.5,
        symmetric: bool = True,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        validate_temperature(temperature)
        check_positive(beta, "beta")
        if not 0.0 <= s_thresh <= 1.0:
            raise ValueError(f"s_thresh must be a probability in [0, 1], got {s_thresh!r}")
        check_reduction(reduction)
        self.temperature = temperature
        self.beta = beta
        self.s_thresh = s_thresh
        self.symmetric = symmetric
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

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
            beta=self.beta,
            s_thresh=self.s_thresh,
            generator=generator,
            temperature=self.temperature,
            symmetric=self.symmetric,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )


class SoftCLIPLoss(nn.Module):
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
        temperature: float = 0.125,
        target_temperature: float | None = None,
        symmetric: bool = True,
        detach_targets: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_positive(temperature, "temperature")
        if target_temperature is not None:
            check_positive(target_temperature, "target_temperature")
        check_reduction(reduction)
        self.temperature = temperature
        self.target_temperature = target_temperature
        self.symmetric = symmetric
        self.detach_targets = detach_targets
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Loss of predictions ``a`` against targets ``b`` (both ``(B, d)``)."""
        return soft_clip_loss(
            a,
            b,
            temperature=self.temperature,
            target_temperature=self.target_temperature,
            symmetric=self.symmetric,
            detach_targets=self.detach_targets,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )
