"""Metrix: mixup for pair-based metric-learning losses (contrastive margin and Multi-Similarity).

A pair loss is written generically as ``ℓ(a) = τ(Σ_{p∈P(a)} ρ⁺(s_ap), Σ_{n∈N(a)} ρ⁻(s_an))``.
Metrix mixes, at the embedding level, a positive and a negative of the anchor (or the anchor
itself and a negative) with ``λ ~ Beta(α, α)`` and scores the mixed example ``ũ`` against the
clean anchor as a *soft* pair: positive with weight ``λ``, negative with weight ``1 - λ``::

    ℓ̃(a) = τ( Σ_u λ_u ρ⁺(s(a, ũ)), Σ_u (1 - λ_u) ρ⁻(s(a, ũ)) ),   total = ℓ_clean + w · ℓ̃.

Reference:
    - [0] Venkataramanan, Psomas, Kijak, Amsaleg, Karantzalos, Avrithis, "It Takes Two to
      Tango: Mixup for Deep Metric Learning", ICLR 2022. ``billpsomas/Metrix_ICLR22``
      (``mixup/utils.py``, ``train.py``).

Not softmax-family: these losses have no softmax denominator over candidates, so they do not
run on the similarity engine. Similarities of mixed examples are computed from the ``B × B``
Gram matrix (``O(B²)`` memory, no ``(T, d)`` mixed-embedding tensor), which suits the batch
sizes of metric learning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._checks import (
    ValueChecks,
    check_labels,
    check_non_negative,
    check_positive,
    validate_labeled,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare
from contrastkit.losses._sampling import sample_beta
from contrastkit.losses.multi_similarity import (
    IndicesTuple,
    label_pair_masks,
    multi_similarity_loss,
)

#: ``'positive_negative'``: mix a positive and a negative of the anchor (the anchor stays clean);
#: ``'anchor_negative'``: mix the anchor itself with one of its negatives.
MixMode = Literal["positive_negative", "anchor_negative"]
_MODES = ("positive_negative", "anchor_negative")


@dataclass(frozen=True)
class MetrixMixes:
    """The mixed examples of a batch: ``ũ_t = λ_t z[first_t] + (1 - λ_t) z[negative_t]``.

    Each is scored against the clean anchor ``z[anchor_t]``.

    Attributes:
        anchor: ``(T,)`` int64 anchor index.
        first: ``(T,)`` int64 index of the positive (or of the anchor itself).
        negative: ``(T,)`` int64 index of the negative.
        lambdas: ``(T,)`` mixing coefficients in ``[0, 1]`` (the soft positive weight).
    """

    anchor: Tensor
    first: Tensor
    negative: Tensor
    lambdas: Tensor


def metrix_mixes(
    labels: Tensor,
    *,
    mode: MixMode = "positive_negative",
    mix_alpha: float = 2.0,
    lam: float | None = None,
    generator: torch.Generator | None = None,
) -> MetrixMixes:
    """All mixed examples of a batch, with their ``λ``.

    ``'positive_negative'``: every ``(a, p, n)`` with ``p ≠ a`` a positive and ``n`` a negative
    of ``a`` (``O(B³)`` triplets; pass your own mined :class:`MetrixMixes` for large batches).
    ``'anchor_negative'``: every ``(a, a, n)``. ``λ`` is ``lam`` for all, or one
    ``Beta(mix_alpha, mix_alpha)`` draw per mixed example from ``generator``. The reference
    draws one ``λ`` per batch (pass ``lam`` to reproduce it) and mixes each anchor's first
    positive with its negatives (a subset of the triplets here).

    Args:
        labels: ``(B,)`` int labels or ``(B, L)`` 0/1 multi-labels.
        mode: which pairs are mixed (see :data:`MixMode`).
        mix_alpha: Beta concentration ``α`` (Metrix default 2.0).
        lam: fixed ``λ`` in ``[0, 1]`` instead of sampling.
        generator: RNG for the ``λ`` draws (None: torch's global RNG).

    Returns:
        :class:`MetrixMixes`, possibly empty.

    Raises:
        ValueError: on bad labels, an unknown mode, ``mix_alpha ≤ 0`` or ``lam`` outside [0, 1].

    Examples:
        >>> mixes = metrix_mixes(torch.tensor([0, 0, 1, 1]), lam=0.5)
        >>> int(mixes.anchor.numel())
        8
    """
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    check_labels(labels, labels.shape[0])
    _check_mix_options(mode, mix_alpha, lam)
    pos, neg = label_pair_masks(labels)  # (B, B) bool each
    if mode == "positive_negative":
        triplets = (pos[:, :, None] & neg[:, None, :]).nonzero()  # (T, 3): a, p, n
        anchor, first, negative = triplets.unbind(1)
    else:
        anchor, negative = neg.nonzero().unbind(1)
        first = anchor
    count = anchor.shape[0]
    if lam is not None:
        lambdas = torch.full((count,), float(lam), device=labels.device)
    else:
        lambdas = sample_beta(mix_alpha, mix_alpha, (count,), generator=generator)
    return MetrixMixes(anchor, first, negative, lambdas.to(labels.device))


def _gram(embeddings: Tensor) -> Tensor:
    x = embeddings.float() if embeddings.dtype in (torch.float16, torch.bfloat16) else embeddings
    return x @ x.T  # (B, B)


def _mixed_similarity(
    gram: Tensor, mixes: MetrixMixes, normalize: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """``(<z_a, ũ>, |ũ|², |z_a|²)`` of each mixed example, from Gram entries only."""
    a, f, n = mixes.anchor, mixes.first, mixes.negative
    lam = mixes.lambdas.to(gram.dtype)
    dot = lam * gram[a, f] + (1 - lam) * gram[a, n]  # (T,)
    sq = lam**2 * gram[f, f] + (1 - lam) ** 2 * gram[n, n] + 2 * lam * (1 - lam) * gram[f, n]
    if normalize:  # the mixed embedding is re-normalised (PML distances normalise their inputs)
        norm = sq.clamp(min=1e-24).sqrt()
        return dot / norm, torch.ones_like(sq), torch.ones_like(sq)
    return dot, sq, gram[a, a]


def _distance(sq: Tensor) -> Tensor:
    """Euclidean distance from a squared distance; zero gradient at 0 instead of inf."""
    return sq.clamp(min=1e-24).sqrt()


def _check_mix_options(mode: MixMode, mix_alpha: float, lam: float | None) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    check_positive(mix_alpha, "mix_alpha")
    if lam is not None and (
        not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0.0 <= lam <= 1.0
    ):
        raise ValueError(f"lam must be a number in [0, 1], got {lam!r}")


def _check_mixes(mixes: MetrixMixes, batch: int, checks: ValueChecks) -> MetrixMixes:
    """Check explicit mixes; out-of-range indices are clamped (``checks`` then fails)."""
    if not isinstance(mixes, MetrixMixes):
        raise ValueError(f"mixes must be a MetrixMixes, got {type(mixes).__name__}")
    fields = (mixes.anchor, mixes.first, mixes.negative)
    if any(t.ndim != 1 or t.is_floating_point() for t in fields):
        raise ValueError("mixes: anchor, first and negative must be 1-D integer tensors")
    if not all(t.shape == mixes.lambdas.shape for t in fields) or mixes.lambdas.ndim != 1:
        raise ValueError("mixes: anchor, first, negative and lambdas must have equal lengths")
    if not mixes.anchor.numel():
        return mixes
    for name, t in zip(("anchor", "first", "negative"), fields, strict=True):
        checks.require(
            ((t >= 0) & (t < batch)).all(), f"mixes: {name} has indices outside [0, {batch})"
        )
    lam = mixes.lambdas
    checks.require(((lam >= 0) & (lam <= 1)).all(), "mixes: lambdas must lie in [0, 1]")
    anchor, first, negative = (t.clamp(0, batch - 1) for t in fields)
    return MetrixMixes(anchor, first, negative, lam)


def _prepare_inputs(
    embeddings: Tensor,
    labels: Tensor,
    mixes: MetrixMixes | None,
    mode: MixMode,
    mix_alpha: float,
    lam: float | None,
    generator: torch.Generator | None,
    mix_weight: float,
    normalize: bool,
    check_values: bool,
) -> tuple[MetrixMixes, ValueChecks]:
    if labels is None:
        raise ValueError("labels must be a torch.Tensor, got None")
    checks = validate_labeled(
        embeddings, labels, min_rows=2, normalize=normalize, check_values=check_values
    )
    check_non_negative(mix_weight, "mix_weight")
    _check_mix_options(mode, mix_alpha, lam)
    if mixes is None:
        mixes = metrix_mixes(labels, mode=mode, mix_alpha=mix_alpha, lam=lam, generator=generator)
    return _check_mixes(mixes, embeddings.shape[0], checks), checks


@full_precision
def metrix_contrastive(
    embeddings: Tensor,
    labels: Tensor,
    *,
    mixes: MetrixMixes | None = None,
    mode: MixMode = "positive_negative",
    mix_alpha: float = 2.0,
    lam: float | None = None,
    generator: torch.Generator | None = None,
    pos_margin: float = 0.0,
    neg_margin: float = 0.5,
    mix_weight: float = 0.4,
    normalize: bool = True,
    check_values: bool = True,
) -> Tensor:
    """Metrix on the contrastive (margin) loss, with Euclidean distances ``d``.

    Clean loss over all label pairs (``P``: same label, ``a ≠ p``; ``N``: different label)::

        ℓ_clean = mean_{(a,p)∈P} [d(a,p) - m⁺]₊ + mean_{(a,n)∈N} [m⁻ - d(a,n)]₊

    Mixed loss over the mixed examples ``ũ_t = λ_t z_f + (1 - λ_t) z_n`` (re-normalised when
    ``normalize``), scored against the clean anchor::

        ℓ_mix = mean_t ( λ_t [d(a_t, ũ_t) - m⁺]₊ + (1 - λ_t) [m⁻ - d(a_t, ũ_t)]₊ )

    Total ``ℓ_clean + w · ℓ_mix``; a scalar (means over pairs, as pytorch-metric-learning's
    ``MeanReducer``; a per-anchor ``reduction`` does not apply to pair means). An empty set of
    negative pairs or of mixed examples contributes 0; a batch without any positive pair is an
    error (as :func:`multi_similarity_loss`).

    Defaults (Metrix code, embedding-level mixing): ``m⁺ = 0``, ``m⁻ = 0.5``, ``α = 2``,
    ``w = 0.4`` (the reference uses 0.3 for the embedding-level anchor–negative branch).

    With ``λ = 1`` in ``'positive_negative'`` mode, ``ℓ_mix`` is the mean positive-pair term
    over the triplets; with ``mix_weight = 0`` the loss is the clean contrastive loss.

    Args:
        embeddings: ``(B, d)`` embeddings.
        labels: ``(B,)`` int labels or ``(B, L)`` 0/1 multi-labels.
        mixes: explicit mixed examples (e.g. mined); None builds them with :func:`metrix_mixes`.
        mode: ``'positive_negative'`` or ``'anchor_negative'`` (when ``mixes`` is None).
        mix_alpha: Beta concentration ``α`` of ``λ``.
        lam: fixed ``λ`` for every mixed example instead of sampling.
        generator: RNG for the ``λ`` draws.
        pos_margin: ``m⁺``.
        neg_margin: ``m⁻``.
        mix_weight: ``w ≥ 0``.
        normalize: L2-normalise embeddings and mixed embeddings.
        check_values: check NaN/inf and the indices/``λ`` of ``mixes``.

    Returns:
        Scalar loss (fp32 for half inputs).

    Raises:
        ValueError: on bad shapes/labels, no positive pair, non-finite values, bad
            hyper-parameters or ``mixes``.

    Peers: ``ℓ_clean`` equals pytorch-metric-learning
    ``ContrastiveLoss(pos_margin, neg_margin, reducer=MeanReducer())`` (its default
    ``AvgNonZeroReducer`` averages over non-zero pairs instead). The Metrix reference scores
    each anchor's first positive mixed with each of its negatives, with one ``λ`` per batch.

    Examples:
        >>> emb, lab = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = metrix_contrastive(emb, lab, generator=torch.Generator().manual_seed(0))
    """
    mixes, checks = _prepare_inputs(
        embeddings,
        labels,
        mixes,
        mode,
        mix_alpha,
        lam,
        generator,
        mix_weight,
        normalize,
        check_values,
    )
    _check_margins(pos_margin, neg_margin)
    z = prepare(embeddings, normalize)  # (B, d)
    gram = _gram(z)  # (B, B)
    sq_all = gram.diagonal()[:, None] + gram.diagonal()[None, :] - 2 * gram  # (B, B)
    dist = _distance(sq_all)
    pos, neg = label_pair_masks(labels.to(z.device))  # (B, B) each
    checks.require(pos.any(), "labels: the batch has no positive pair (every label is unique)")
    clean = _masked_mean(F.relu(dist - pos_margin), pos) + _masked_mean(
        F.relu(neg_margin - dist), neg
    )
    if mixes.anchor.numel() == 0 or mix_weight == 0:
        return checks.verify(clean)
    dot, sq_mix, sq_anchor = _mixed_similarity(gram, mixes, normalize)  # (T,) each
    d_mix = _distance(sq_anchor - 2 * dot + sq_mix)  # (T,)
    lam_t = mixes.lambdas.to(d_mix.dtype)
    mixed = lam_t * F.relu(d_mix - pos_margin) + (1 - lam_t) * F.relu(neg_margin - d_mix)
    return checks.verify(clean + mix_weight * mixed.mean())


def _check_margins(pos_margin: float, neg_margin: float) -> None:
    for name, value in (("pos_margin", pos_margin), ("neg_margin", neg_margin)):
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a finite number, got {value!r}")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


@full_precision
def metrix_multi_similarity(
    embeddings: Tensor,
    labels: Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    indices_tuple: IndicesTuple | None = None,
    mixes: MetrixMixes | None = None,
    mode: MixMode = "positive_negative",
    mix_alpha: float = 2.0,
    lam: float | None = None,
    generator: torch.Generator | None = None,
    mix_weight: float = 0.4,
    normalize: bool = True,
    check_values: bool = True,
) -> Tensor:
    """Metrix on the Multi-Similarity loss (cosine similarity ``S``).

    ``ℓ_clean`` is :func:`contrastkit.losses.multi_similarity.multi_similarity_loss` (reused, with
    the same ``indices_tuple``). For the mixed examples ``U(a)`` of anchor ``a``, with
    ``S_au = cos(z_a, ũ_u)``::

        ℓ_mix(a) = (1/α) log[1 + Σ_{u∈U(a)} λ_u e^{-α(S_au - λ_b)}]
                 + (1/β) log[1 + Σ_{u∈U(a)} (1 - λ_u) e^{β(S_au - λ_b)}]

    (``λ_b = base``), averaged over all ``B`` anchors like the clean term (0 for anchors with no
    mixed example). Total ``ℓ_clean + w · mean_a ℓ_mix(a)``.

    Convention difference: the Metrix code adds ``0.4 ×`` the mixed sums *inside* the clean
    logarithms (and scales the clean sums by ``λ``); here the generic form of the paper is
    used — clean loss plus ``w`` times the mixed loss.

    Args:
        embeddings: ``(B, d)`` embeddings.
        labels: ``(B,)`` int labels or ``(B, L)`` 0/1 multi-labels.
        alpha: positive scale ``α > 0`` (pytorch-metric-learning default 2).
        beta: negative scale ``β > 0`` (default 50).
        base: similarity margin ``λ_b`` (default 0.5).
        indices_tuple: mined ``(a1, p, a2, n)`` for the clean term (e.g. from
            :func:`multi_similarity_mine`); None uses all label pairs.
        mixes: explicit mixed examples; None builds them with :func:`metrix_mixes`.
        mode: ``'positive_negative'`` or ``'anchor_negative'`` (when ``mixes`` is None).
        mix_alpha: Beta concentration of ``λ``.
        lam: fixed ``λ`` instead of sampling.
        generator: RNG for the ``λ`` draws.
        mix_weight: ``w ≥ 0``.
        normalize: cosine similarity (re-normalising mixed embeddings) or raw dot products.
        check_values: check NaN/inf, a positive pair, ``indices_tuple`` and ``mixes``.

    Returns:
        Scalar loss.

    Raises:
        ValueError: on bad inputs or hyper-parameters (see :func:`multi_similarity_loss`).

    Peers: ``ℓ_clean`` equals pytorch-metric-learning ``MultiSimilarityLoss(alpha, beta, base)``;
    the mixed term has no peer and is tested against a float64 loop reference.

    Examples:
        >>> emb, lab = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = metrix_multi_similarity(emb, lab, generator=torch.Generator().manual_seed(0))
    """
    mixes, checks = _prepare_inputs(
        embeddings,
        labels,
        mixes,
        mode,
        mix_alpha,
        lam,
        generator,
        mix_weight,
        normalize,
        check_values,
    )
    clean = multi_similarity_loss(
        embeddings,
        labels,
        indices_tuple,
        alpha=alpha,
        beta=beta,
        base=base,
        normalize=normalize,
        check_values=check_values,
    )
    if mixes.anchor.numel() == 0 or mix_weight == 0:
        return checks.verify(clean)
    z = prepare(embeddings, normalize)  # (B, d)
    sim, _, _ = _mixed_similarity(_gram(z), mixes, normalize)  # (T,)
    lam_t = mixes.lambdas.to(sim.dtype)
    batch = z.shape[0]
    pos_term = _log_one_plus_weighted_sum(-alpha * (sim - base), lam_t, mixes.anchor, batch)
    neg_term = _log_one_plus_weighted_sum(beta * (sim - base), 1 - lam_t, mixes.anchor, batch)
    mixed = pos_term / alpha + neg_term / beta  # (B,)
    return checks.verify(clean + mix_weight * mixed.mean())


def _log_one_plus_weighted_sum(x: Tensor, w: Tensor, group: Tensor, size: int) -> Tensor:
    """Per group ``g``: ``log(1 + Σ_{t: group_t = g} w_t exp(x_t))``, stably, ``(size,)``.

    Terms of weight 0 (``λ`` of exactly 0 or 1) do not count in the shift: a huge logit with
    weight 0 would otherwise push every other term, the ``1 +`` included, below the float
    range and give ``log 0 = -inf``.
    """
    counted = x.detach().masked_fill(w == 0, float("-inf"))
    peak = torch.zeros(size, dtype=x.dtype, device=x.device)  # the "1 +" term is exp(0)
    peak = peak.scatter_reduce(0, group, counted, reduce="amax", include_self=True)
    shifted = torch.where(w > 0, x - peak[group], torch.full_like(x, float("-inf")))
    terms = w * torch.exp(shifted)  # exp(-inf) = 0 with a zero gradient, never 0 · inf
    total = torch.exp(-peak).index_add(0, group, terms)
    return torch.log(total) + peak


class MetrixContrastiveLoss(LossModule):
    """Module wrapper of :func:`metrix_contrastive`; see it for the formula.

    Inputs: ``forward(embeddings, labels, mixes=None, generator=None)`` with ``(B, d)``
    embeddings and class labels. Use it as a drop-in for a contrastive margin loss in deep
    metric learning (image retrieval) when mixing positives with negatives should densify the
    embedding space between classes; :class:`MetrixMultiSimilarityLoss` is the MS variant.

    Examples:
        >>> loss_fn = MetrixContrastiveLoss()
        >>> emb, lab = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(emb, lab, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        *,
        pos_margin: float = 0.0,
        neg_margin: float = 0.5,
        mix_weight: float = 0.4,
        mode: MixMode = "positive_negative",
        mix_alpha: float = 2.0,
        normalize: bool = True,
        check_values: bool = True,
    ) -> None:
        super().__init__(normalize=normalize, check_values=check_values)
        _check_mix_options(mode, mix_alpha, None)
        _check_margins(pos_margin, neg_margin)
        check_non_negative(mix_weight, "mix_weight")
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.mix_weight = mix_weight
        self.mode: MixMode = mode
        self.mix_alpha = mix_alpha

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        mixes: MetrixMixes | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss of ``(B, d)`` embeddings with ``(B,)`` / ``(B, L)`` labels."""
        return metrix_contrastive(
            embeddings,
            labels,
            mixes=mixes,
            generator=generator,
            mode=self.mode,
            mix_alpha=self.mix_alpha,
            pos_margin=self.pos_margin,
            neg_margin=self.neg_margin,
            mix_weight=self.mix_weight,
            **self.options(),
        )


class MetrixMultiSimilarityLoss(LossModule):
    """Module wrapper of :func:`metrix_multi_similarity`; see it for the formula.

    Inputs: ``forward(embeddings, labels, indices_tuple=None, mixes=None, generator=None)``. Use
    it instead of :class:`contrastkit.losses.multi_similarity.MultiSimilarityLoss` to add Metrix
    mixing; pass a miner's ``indices_tuple`` for the clean term as usual.

    Examples:
        >>> loss_fn = MetrixMultiSimilarityLoss()
        >>> emb, lab = torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(emb, lab, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        mix_weight: float = 0.4,
        mode: MixMode = "positive_negative",
        mix_alpha: float = 2.0,
        normalize: bool = True,
        check_values: bool = True,
    ) -> None:
        super().__init__(normalize=normalize, check_values=check_values)
        check_positive(alpha, "alpha")
        check_positive(beta, "beta")
        _check_mix_options(mode, mix_alpha, None)
        check_non_negative(mix_weight, "mix_weight")
        self.alpha = alpha
        self.beta = beta
        self.base = base
        self.mix_weight = mix_weight
        self.mode: MixMode = mode
        self.mix_alpha = mix_alpha

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices_tuple: IndicesTuple | None = None,
        mixes: MetrixMixes | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss of ``(B, d)`` embeddings with ``(B,)`` / ``(B, L)`` labels."""
        return metrix_multi_similarity(
            embeddings,
            labels,
            indices_tuple=indices_tuple,
            mixes=mixes,
            generator=generator,
            alpha=self.alpha,
            beta=self.beta,
            base=self.base,
            mode=self.mode,
            mix_alpha=self.mix_alpha,
            mix_weight=self.mix_weight,
            **self.options(),
        )
