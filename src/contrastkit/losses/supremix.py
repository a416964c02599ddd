"""SupReMix: supervised contrastive regression with embedding-level mixtures.

SupCon semantics (positives = rows with the *same* label) on top of which every anchor gets
extra, anchor-specific candidates built by mixing embeddings:

* **hard negatives** (anchor-inclusive): ``z̃ = λ z_i + (1 - λ) z_k`` for every ``k`` with
  ``y_k ≠ y_i``, ``λ ~ Beta(2, 8)``; its label ``λ y_i + (1 - λ) y_k`` differs from ``y_i``.
* **hard positives** (anchor-exclusive): ``z̃ = λ z_j + (1 - λ) z_k`` for every pair with
  ``y_j < y_i < y_k``, with ``λ = (y_k - y_i) / (y_k - y_j)`` so that the mixed label is ``y_i``.

Reference:
    - [0] Wu et al., "Mixup Your Own Pairs" (SupReMix), 2023. ``yilei-wu/SupReMix`` (README;
      ``mixing_func`` and ``SupConLoss_v2.calculate_weight`` read from public copies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_positive,
    check_reduction,
    check_temperature,
    check_tensor,
)
from contrastkit.engine import SideStats, TilePairs, pairwise_lse, safe_logsumexp
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.losses._sampling import sample_beta
from contrastkit.losses.supcon import multi_positive_losses, reduce_supcon

LabelWeight = Callable[[Tensor], Tensor]

#: Elements of one ``(anchors, N, N)`` block of positive-mixture logits.
_POSITIVE_BLOCK = 1 << 22


def supremix_weight_l1(distance: Tensor) -> Tensor:
    """``1 / (|Δy| + 1)``: the reference's ``'L1'`` weight (far labels pushed *less*)."""
    return 1.0 / (distance + 1.0)


def supremix_weight_l2(distance: Tensor) -> Tensor:
    """``1 / (Δy² + 1)``: the reference's ``'L2'`` weight."""
    return 1.0 / (distance * distance + 1.0)


def supremix_weight_l1_inv(distance: Tensor) -> Tensor:
    """``|Δy| + 1``: the reference's ``'L1_inv'`` weight (far labels pushed *more*)."""
    return distance + 1.0


def supremix_weight_l2_inv(distance: Tensor) -> Tensor:
    """``Δy² + 1``: the reference's ``'L2_inv'`` weight ("distance magnifying")."""
    return distance * distance + 1.0


@dataclass(frozen=True)
class RegressionPairs:
    """Pair rule of the in-batch part: self excluded, equal labels positive, label weights.

    Attributes:
        labels: ``(N,)`` float (binned) labels of rows and columns.
        label_weight: maps ``|y_i - y_j|`` to a positive weight that multiplies ``exp(s_ij)``
            in the denominator (returned as ``log_weight``), or None.
    """

    labels: Tensor
    label_weight: LabelWeight | None = None

    @property
    def has_weights(self) -> bool:
        """Always True: positives carry unit weights."""
        return True

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """Masks, unit positive weights and log label-weights of the tile ``S[rows, cols]``."""
        idx = torch.arange(self.labels.shape[0], device=self.labels.device)
        exclude = idx[rows, None] == idx[None, cols]  # (r, c) self-pairs
        y_r, y_c = self.labels[rows, None], self.labels[None, cols]
        weight = ((y_r == y_c) & ~exclude).to(self.labels.dtype)
        log_weight = None
        if self.label_weight is not None:
            log_weight = torch.log(self.label_weight((y_r - y_c).abs()))
        return TilePairs(exclude=exclude, weight=weight, log_weight=log_weight)


def _positive_mixture_block(
    logits: Tensor, y_rows: Tensor, y: Tensor, max_distance: float | None, log_w0: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Stats of the anchor-exclusive positive mixtures of a block of anchors.

    ``logits``: ``(c, N)`` similarities ``<z_i, z̄_j>/τ`` of the block's anchors. Returns
    ``(lse, weighted_sum, count)``, each ``(c,)``.
    """
    yi, yj, yk = y_rows[:, None, None], y[None, :, None], y[None, None, :]
    valid = (yj < yi) & (yi < yk)  # (c, N, N)
    if max_distance is not None:
        valid = valid & (yi - yj < max_distance) & (yk - yi < max_distance)
    span = torch.where(valid, yk - yj, torch.ones_like(yk - yj))
    lam = torch.where(valid, (yk - yi) / span, torch.zeros_like(span))  # mixed label = y_i
    mixed = lam * logits[:, :, None] + (1 - lam) * logits[:, None, :]  # (c, N, N)
    weighted_sum = (mixed * valid).sum((1, 2))
    count = valid.sum((1, 2)).to(logits.dtype)
    lse = safe_logsumexp((mixed + log_w0).masked_fill(~valid, float("-inf")).flatten(1), 1)
    return lse, weighted_sum, count


def _mixture_stats(
    queries: Tensor,
    candidates: Tensor,
    y: Tensor,
    negative_lambdas: Tensor | None,
    mix_positives: bool,
    max_distance: float | None,
    label_weight: LabelWeight | None,
) -> SideStats:
    """Row statistics of every anchor's mixtures, from the similarities of the batch.

    A mixture's logit is linear in the batch similarities (mixtures are not re-normalised):
    ``<z_i, λ z̄_a + (1 - λ) z̄_b>/τ = λ s_ia + (1 - λ) s_ib``.
    """
    s = queries @ candidates.T  # (N, N)
    n = s.shape[0]
    zeros = s.new_zeros(n)
    stats = SideStats(s.new_full((n,), float("-inf")), zeros, zeros)
    if negative_lambdas is not None:
        lam = negative_lambdas.to(s.dtype)
        neg = lam * s.diagonal()[:, None] + (1 - lam) * s  # (N, N) λ s_ii + (1-λ) s_ik
        if label_weight is not None:
            neg = neg + torch.log(label_weight((1 - lam) * (y[:, None] - y[None, :]).abs()))
        neg = neg.masked_fill(y[:, None] == y[None, :], float("-inf"))
        stats = stats.merge(SideStats(safe_logsumexp(neg, 1), zeros, zeros))
    if mix_positives:
        log_w0 = torch.zeros((), dtype=s.dtype, device=s.device)
        if label_weight is not None:
            log_w0 = torch.log(label_weight(log_w0))
        rows = max(1, _POSITIVE_BLOCK // max(1, n * n))
        parts = []
        for r0 in range(0, n, rows):
            # Recomputed in backward: only the (rows, N) logits are kept, not the cube.
            parts.append(
                checkpoint(
                    _positive_mixture_block,
                    s[r0 : r0 + rows],
                    y[r0 : r0 + rows],
                    y,
                    max_distance,
                    log_w0,
                    use_reentrant=False,
                )
            )
        lse, ws, wt = (torch.cat(x) for x in zip(*parts, strict=True))
        stats = stats.merge(SideStats(lse, ws, wt))
    return stats


def _check_options(
    base_temperature: float | None,
    negative_beta: tuple[float, float],
    max_label_distance: float | None,
) -> None:
    if base_temperature is not None:
        check_positive(base_temperature, "base_temperature")
    if max_label_distance is not None:
        check_positive(max_label_distance, "max_label_distance")
    if not isinstance(negative_beta, (tuple, list)) or len(negative_beta) != 2:
        raise ValueError(f"negative_beta must be a pair (a, b), got {negative_beta!r}")
    check_positive(negative_beta[0], "negative_beta[0]")
    check_positive(negative_beta[1], "negative_beta[1]")


@full_precision
def supremix_per_anchor(
    embeddings: Tensor,
    labels: Tensor,
    *,
    temperature: float | Tensor = 0.07,
    base_temperature: float | None = None,
    mix_negatives: bool = True,
    mix_positives: bool = True,
    negative_beta: tuple[float, float] = (2.0, 8.0),
    negative_lambdas: Tensor | None = None,
    max_label_distance: float | None = None,
    label_weight: LabelWeight | None = None,
    detach_mixtures: bool = True,
    generator: torch.Generator | None = None,
    normalize: bool = True,
    chunk_size: int | None = None,
    check_values: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-anchor SupReMix losses and the mask of anchors with a positive (see :func:`supremix`).

    Returns:
        ``(losses, has_positive)``, both ``(V·B,)`` in views-major order.
    """
    if isinstance(embeddings, Tensor) and embeddings.ndim == 2:
        embeddings = embeddings.unsqueeze(1)  # (B, 1, d)
    check_tensor(embeddings, "embeddings", ndim=3)
    batch, views = embeddings.shape[:2]
    if batch * views < 3:
        raise ValueError(
            f"embeddings needs at least 3 rows in all (B·V): with {batch * views} an anchor's "
            f"softmax holds only its positive (shape {tuple(embeddings.shape)})"
        )
    if not isinstance(labels, Tensor) or labels.shape != (batch,) or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be a numeric (binned regression target) tensor of shape ({batch},)"
        )
    checks = ValueChecks(check_values, "embeddings")
    checks.finite("embeddings", embeddings)
    if normalize:
        checks.nonzero_rows("embeddings", embeddings)
    if labels.is_floating_point():
        checks.finite("labels", labels)
    check_temperature(temperature, checks)
    _check_options(base_temperature, negative_beta, max_label_distance)
    n = batch * views
    if negative_lambdas is not None:
        if not isinstance(negative_lambdas, Tensor) or negative_lambdas.shape != (n, n):
            raise ValueError(f"negative_lambdas must have shape ({n}, {n}) (views-major rows)")
        checks.require(
            ((negative_lambdas >= 0) & (negative_lambdas <= 1)).all(),
            "negative_lambdas must lie in [0, 1]",
        )

    z = prepare(embeddings, normalize).transpose(0, 1).reshape(n, -1)  # (N, d) views-major
    y = labels.to(device=z.device, dtype=z.dtype).repeat(views)  # (N,)
    queries = scale_by_temperature(z, temperature)  # (N, d)
    batch_stats = pairwise_lse(
        queries, z, RegressionPairs(y, label_weight), chunk_size=chunk_size
    ).rows
    assert batch_stats is not None
    stats = batch_stats
    if mix_negatives or mix_positives:
        lam = None
        if mix_negatives:
            lam = negative_lambdas
            if lam is None:
                a, b = negative_beta
                lam = sample_beta(a, b, (n, n), generator=generator, device=z.device)
        mixture_candidates = z.detach() if detach_mixtures else z
        stats = stats.merge(
            _mixture_stats(
                queries, mixture_candidates, y, lam, mix_positives, max_label_distance, label_weight
            )
        )
    assert stats.weighted_sum is not None and stats.weight_total is not None
    num_pos = stats.weight_total  # (N,) |P(i)|: same-label rows + positive mixtures
    has_positive = num_pos > 0
    checks.require(
        has_positive.any(),
        "labels: no anchor has a positive (no equal labels, one view, no bracketing pair); "
        "SupReMix needs binned labels with repeats, several views or positive mixtures",
    )
    losses = multi_positive_losses(
        stats.lse,
        stats.weighted_sum,
        num_pos,
        has_positive,
        temperature=temperature,
        base_temperature=base_temperature,
    )
    return checks.verify(losses), has_positive


@full_precision
def supremix(
    embeddings: Tensor,
    labels: Tensor,
    *,
    temperature: float | Tensor = 0.07,
    base_temperature: float | None = None,
    mix_negatives: bool = True,
    mix_positives: bool = True,
    negative_beta: tuple[float, float] = (2.0, 8.0),
    negative_lambdas: Tensor | None = None,
    max_label_distance: float | None = None,
    label_weight: LabelWeight | None = None,
    detach_mixtures: bool = True,
    generator: torch.Generator | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """SupReMix: SupCon over the batch plus per-anchor mixed hard negatives and hard positives.

    Views-major rows ``z`` (``N = V·B``), labels ``y`` (binned), ``s_ia = <z_i, z_a>/τ``. For
    anchor ``i`` the candidates are

    * the other rows ``a ≠ i`` (positive iff ``y_a = y_i``),
    * negative mixtures ``m_ik = λ_ik z̄_i + (1 - λ_ik) z̄_k`` for ``y_k ≠ y_i``, ``λ_ik ~ Beta``,
      with label ``λ_ik y_i + (1 - λ_ik) y_k``,
    * positive mixtures ``m_ijk = λ z̄_j + (1 - λ) z̄_k`` for ``y_j < y_i < y_k`` (within
      ``max_label_distance`` of ``y_i``), ``λ = (y_k - y_i)/(y_k - y_j)``, label ``y_i``,

    where ``z̄`` is ``z`` detached (``detach_mixtures=True``, as the reference) and mixtures are
    not re-normalised. With ``P(i)`` the positive candidates, ``A(i)`` all candidates, ``w`` the
    optional label-distance weight of a candidate (``label_weight(|y_i - y_cand|)``, 1 without)::

        ℓ_i = -(τ/τ_base) (1/|P(i)|) Σ_{p∈P(i)} [ s_ip - log Σ_{c∈A(i)} w_ic exp(s_ic) ]

    Positives **are** in the denominator; the weights multiply every denominator term
    (positives included: all built-in weights are 1 at distance 0), never the numerator.
    With both mixture kinds off and no weight this is exactly :func:`contrastkit.supcon`.

    **Binned labels are required**: "same label" is exact equality, so continuous targets must
    be discretised (e.g. rounded ages) before calling; the loss cannot check this.

    Reduction: mean over anchors with a positive; ``'none'`` returns ``(N,)`` views-major, 0 for
    anchors without one.

    Memory: the in-batch part runs on the similarity engine (``O(N·d)`` tiled, with a
    :class:`RegressionPairs` rule). The mixtures cannot: their candidates are specific to each
    anchor (they contain the anchor, or depend on its label), so they are not columns of one
    shared ``A Cᵀ``. Their logits are linear in the batch similarities and are computed from
    the dense ``N × N`` matrix: ``O(N²)`` for the negative mixtures, and for the ``O(N³)``
    positive mixtures in checkpointed blocks of ``2²²`` logits (recomputed in backward), never
    as ``(N, N², d)`` mixture embeddings like the reference.

    Randomness: ``λ_ik ~ Beta(*negative_beta)`` drawn as one ``(N, N)`` tensor from
    ``generator`` (``negative_lambdas`` gives them explicitly). Positive mixtures are
    deterministic.

    Defaults (reference ``SupConLoss_v2`` / ``mixing_func``): ``τ = 0.07``, negative ``λ ~
    Beta(2, 8)`` (``b=0``; ``Beta(8, 2)`` and ``Beta(5, 5)`` are its other options), mixtures
    detached, cosine similarity, no weight (``use_weight=False``). The reference's ``'L1'``,
    ``'L2'``, ``'L1_inv'``, ``'L2_inv'`` are :func:`supremix_weight_l1`, ...; its ``'L2_inv'``
    on mixtures computes ``(Δy + 1)² + 1`` (inconsistent with its in-batch ``Δy² + 1``), here
    the same function applies to both. The reference's ``base_temperature=0.07`` is
    ``τ/τ_base = 1`` at the default ``τ``.

    Args:
        embeddings: ``(B, d)`` or ``(B, V, d)`` projections.
        labels: ``(B,)`` binned regression targets (int or float).
        temperature: ``τ`` > 0.
        base_temperature: ``τ_base`` of the ``τ/τ_base`` factor (None: no factor).
        mix_negatives: add the anchor-inclusive negative mixtures.
        mix_positives: add the anchor-exclusive positive mixtures.
        negative_beta: ``(a, b)`` of the Beta law of the negative ``λ`` (weight on the anchor).
        negative_lambdas: ``(N, N)`` explicit negative ``λ_ik`` (views-major), or None to draw.
        max_label_distance: keep positive mixtures with ``|y_j - y_i|`` and ``|y_k - y_i|`` below
            it (the reference's ``n``); None keeps every bracketing pair.
        label_weight: positive weight of a label distance, e.g. :func:`supremix_weight_l1`.
        detach_mixtures: mixtures carry no gradient (only the anchor does), as the reference.
        generator: RNG of the negative ``λ`` (None: torch's global RNG).
        normalize: L2-normalise embeddings (mixtures of normalised rows are not re-normalised).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: tile size of the in-batch (engine) part; None picks automatically.
        check_values: check NaN/inf, ``λ`` range and that some anchor has a positive.

    Returns:
        Scalar loss, or ``(N,)`` with ``reduction='none'``.

    Raises:
        ValueError: on bad shapes/labels/hyper-parameters, non-finite values, or no positive.

    Peers: no package implements it; tested against a float64 loop reference that builds every
    mixture embedding explicitly, and against :func:`contrastkit.supcon`.

    Examples:
        >>> emb = torch.randn(8, 2, 16)
        >>> ages = torch.tensor([20, 21, 22, 20, 23, 21, 25, 22])
        >>> loss = supremix(emb, ages, generator=torch.Generator().manual_seed(0))
    """
    check_reduction(reduction)
    losses, has_positive = supremix_per_anchor(
        embeddings,
        labels,
        temperature=temperature,
        base_temperature=base_temperature,
        mix_negatives=mix_negatives,
        mix_positives=mix_positives,
        negative_beta=negative_beta,
        negative_lambdas=negative_lambdas,
        max_label_distance=max_label_distance,
        label_weight=label_weight,
        detach_mixtures=detach_mixtures,
        generator=generator,
        normalize=normalize,
        chunk_size=chunk_size,
        check_values=check_values,
    )
    return reduce_supcon(losses, has_positive, reduction)


class SupReMixLoss(LossModule):
    """Module wrapper of :func:`supremix`; see it for the formula and conventions.

    Inputs: ``forward(embeddings, labels, generator=None)`` with ``(B, d)`` / ``(B, V, d)``
    projections and ``(B,)`` *binned* regression targets. Use it for representation learning
    on regression data (age, scores, clinical measures) where SupCon's exact-label positives
    are too sparse: the mixtures add positives between bracketing labels and hard negatives
    next to the anchor. :class:`SupConLoss` is the special case without mixtures.

    Examples:
        >>> loss_fn = SupReMixLoss(label_weight=supremix_weight_l1_inv)
        >>> emb, ages = torch.randn(8, 2, 16), torch.tensor([20, 21, 22, 20, 23, 21, 25, 22])
        >>> loss = loss_fn(emb, ages, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.07,
        base_temperature: float | None = None,
        mix_negatives: bool = True,
        mix_positives: bool = True,
        negative_beta: tuple[float, float] = (2.0, 8.0),
        max_label_distance: float | None = None,
        label_weight: LabelWeight | None = None,
        detach_mixtures: bool = True,
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
        _check_options(base_temperature, negative_beta, max_label_distance)
        self.base_temperature = base_temperature
        self.mix_negatives = mix_negatives
        self.mix_positives = mix_positives
        self.negative_beta = negative_beta
        self.max_label_distance = max_label_distance
        self.label_weight = label_weight
        self.detach_mixtures = detach_mixtures

    def forward(
        self, embeddings: Tensor, labels: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Loss of ``(B, d)`` / ``(B, V, d)`` projections with ``(B,)`` binned labels."""
        return supremix(
            embeddings,
            labels,
            generator=generator,
            temperature=self.tau(),
            base_temperature=self.base_temperature,
            mix_negatives=self.mix_negatives,
            mix_positives=self.mix_positives,
            negative_beta=self.negative_beta,
            max_label_distance=self.max_label_distance,
            label_weight=self.label_weight,
            detach_mixtures=self.detach_mixtures,
            **self.options(),
        )
