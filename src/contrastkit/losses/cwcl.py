"""CWCL: continuously weighted contrastive loss (soft positives from a frozen modality).

Reference:
    - [0] Srinivasa et al., "CWCL: Cross-Modal Transfer with Continuously Weighted Contrastive
      Loss", NeurIPS 2023. No official code; implemented from the formula.

What is verified, and what is not:
    - The a→b direction (row-normalised soft labels ``w_ij / Σ_j w_ij`` with
      ``w = (cos + 1) / 2`` of the frozen embeddings) matches the formula as reused in the text of
      a later paper (CellCLIP) and is tested against a float64 loop and against CLIP at ``W = I``.
    - The reverse (b→a) direction could **not** be checked: no official code was found (searched
      public code for a CWCL implementation by the authors, December 2026) and the paper's text
      was not available offline. Here it uses the same frozen weights, transposed (the weights
      are symmetric, so the b→a row ``j`` is normalised by ``Σ_i w_ij``), and the two directions
      are averaged — an assumption. CellCLIP instead applies CWCL one way and plain CLIP the other;
      ``symmetric=False`` gives the one-way loss to build that.
    - Flat weights: with sentence encoders whose cosines are all similar (MiniLM: 0.3–0.7 between
      unrelated sentences), ``(cos + 1) / 2`` gives every pair nearly the same weight, so the
      soft labels carry almost no information about which pair is the true one and training
      degrades without an error. :func:`cwcl` warns (:class:`FlatWeightsWarning`) when, in a
      batch of ``B ≥ 16``, a row's own pair holds on average less than twice the uniform share
      ``1 / B`` of its weight; the remedy is ``weight_temperature`` (a sharper kernel).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from contrastkit._checks import (
    Reduction,
    check_positive,
    check_reduction,
    check_tensor,
    reduce,
    validate_pair,
)
from contrastkit.engine import ExpCosine, Pairs, pairwise_lse, shifted_cosine
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.temperature import LearnableTemperature

FLAT_WEIGHTS_MIN_BATCH = 16
FLAT_WEIGHTS_RATIO = 2.0


class FlatWeightsWarning(UserWarning):
    """CWCL's soft labels are nearly uniform: each row's own pair holds a tiny share."""


def own_pair_share(weight_total: Tensor, weight_fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Share of each row's total weight held by its own pair: ``w(1) / Σ_j w_ij``, ``(B,)``."""
    own = weight_fn(torch.ones((), dtype=weight_total.dtype, device=weight_total.device))
    return own / weight_total


def warn_if_flat(share: Tensor, batch: int) -> None:
    """Warn (:class:`FlatWeightsWarning`) when the mean own-pair share is < 2 / batch."""
    if batch < FLAT_WEIGHTS_MIN_BATCH:
        return
    if float(share.mean()) < FLAT_WEIGHTS_RATIO / batch:
        warnings.warn(
            "cwcl: the soft-label weights are nearly uniform (each row's own pair holds less "
            "than twice the uniform share 1/B of its weight), so CWCL barely distinguishes the "
            "true pair; this happens with (cos + 1) / 2 on sentence embeddings whose cosines are "
            "all similar. Use a sharper kernel: weight_temperature=0.05 (or 0.1).",
            FlatWeightsWarning,
            stacklevel=4,  # warn_if_flat <- cwcl <- full_precision wrapper <- the caller
        )


@full_precision
def cwcl(
    a: Tensor,
    b: Tensor,
    *,
    weight_embeddings: Tensor | None = None,
    temperature: float | Tensor = 0.07,
    symmetric: bool = True,
    weight_fn: Callable[[Tensor], Tensor] = shifted_cosine,
    weight_temperature: float | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """CWCL: a soft-label CLIP loss whose targets come from a frozen modality's similarities.

    With ``s_ij = <a_i, b_j> / τ`` and weights ``w_ij = weight_fn(<q_i, q_j>)`` from the
    L2-normalised frozen embeddings ``q`` (default ``w = (cos + 1) / 2 ∈ [0, 1]``, ``w_ii = 1``)::

        ℓ_i^{a→b} = -(1 / Σ_j w_ij) Σ_j w_ij · log( exp(s_ij) / Σ_k exp(s_ik) )

    i.e. a cross-entropy against the row-normalised soft labels ``w_ij / Σ_j w_ij``. Every
    candidate is in the denominator. ``symmetric=True`` averages with the b→a direction, which
    uses the same frozen weights (an assumption: the paper's reverse direction could not be
    checked, see the module docstring). With ``W = I`` (e.g. orthonormal ``q`` and
    ``weight_fn = relu``) this is exactly :func:`clip_loss`.

    The weights are computed per tile from ``q`` inside the similarity engine — never as a
    ``B × B`` matrix — and carry no gradient.

    Args:
        a: ``(B, d)`` embeddings of the trained modality (U).
        b: ``(B, d)`` embeddings of the frozen modality (V), row-aligned.
        weight_embeddings: ``(B, k)`` frozen embeddings defining the weights (default: ``b``,
            detached). Use the frozen tower's own space, not a trainable projection.
        temperature: ``τ`` > 0, float or scalar tensor.
        symmetric: average a→b and b→a.
        weight_fn: maps a tile of cosines to weights (default ``(cos + 1) / 2``).
        weight_temperature: if given, the weights are ``exp((cos − 1) / weight_temperature)``
            (:class:`~contrastkit.engine.ExpCosine`) instead of ``weight_fn``. Use it when the
            frozen encoder's cosines are all high and ``(cos + 1) / 2`` is nearly flat, e.g.
            sentence encoders (``cwcl-zeroshot`` uses 0.05 with MiniLM).
        normalize: L2-normalise ``a`` and ``b``.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)``, per pair when symmetric).
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check NaN/inf and that every row has positive total weight (syncs), and
            warn (:class:`FlatWeightsWarning`) when the weights are nearly uniform.

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on bad shapes, non-finite values, τ ≤ 0, a row whose weights sum to 0,
            ``weight_temperature`` ≤ 0, or both ``weight_fn`` and ``weight_temperature``.

    Peers: none implement CWCL; tested against a float64 loop reference and against
    :func:`clip_loss` (``W = I``).

    Examples:
        >>> import torch
        >>> speech, text = torch.randn(8, 32), torch.randn(8, 32)
        >>> loss = cwcl(speech, text, temperature=0.07)
    """
    if weight_embeddings is not None:
        check_tensor(weight_embeddings, "weight_embeddings")
        if weight_embeddings.shape[0] != getattr(a, "shape", (None,))[0]:
            raise ValueError(
                f"weight_embeddings must have one row per pair (the rows of a), "
                f"got shape {tuple(weight_embeddings.shape)}"
            )
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    if weight_embeddings is not None:
        checks.finite("weight_embeddings", weight_embeddings)
        checks.nonzero_rows("weight_embeddings", weight_embeddings)  # always normalised
    check_reduction(reduction)
    weight_fn = _weight_kernel(weight_fn, weight_temperature)
    keys_source = b if weight_embeddings is None else weight_embeddings
    za, zb = prepare(a, normalize, checks), prepare(b, normalize, checks)
    keys = prepare(keys_source.detach(), True)  # (B, k) frozen, normalised
    pairs = Pairs(row_keys=keys, col_keys=keys, key_weight=weight_fn)
    queries = scale_by_temperature(za, temperature)
    stats = pairwise_lse(
        queries,
        zb,
        pairs,
        rows=True,
        columns=symmetric,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    )

    def direction_loss(side_total: Tensor, side_sum: Tensor, lse: Tensor) -> Tensor:
        checks.require(
            (side_total > 0).all(),
            "weight_fn gave a row of zero total weight: soft labels undefined",
        )
        return lse - side_sum / side_total

    rows = stats.rows
    assert rows is not None and rows.weighted_sum is not None and rows.weight_total is not None
    if check_values:  # this already syncs; the flatness check reads one more scalar
        warn_if_flat(own_pair_share(rows.weight_total.detach(), weight_fn), za.shape[0])
    losses = direction_loss(rows.weight_total, rows.weighted_sum, rows.lse)  # (B,)
    if symmetric:
        cols = stats.columns
        assert cols is not None and cols.weighted_sum is not None
        assert cols.weight_total is not None
        losses = 0.5 * (losses + direction_loss(cols.weight_total, cols.weighted_sum, cols.lse))
    return checks.verify(reduce(losses, reduction))


def _weight_kernel(
    weight_fn: Callable[[Tensor], Tensor], weight_temperature: float | None
) -> Callable[[Tensor], Tensor]:
    if weight_temperature is None:
        return weight_fn
    if weight_fn is not shifted_cosine:
        raise ValueError("give weight_fn or weight_temperature, not both")
    check_positive(weight_temperature, "weight_temperature")
    return ExpCosine(float(weight_temperature))


class CWCLLoss(LossModule):
    """CWCL with a learnable temperature; see :func:`cwcl`.

    Inputs: ``forward(a, b, weight_embeddings=None)``: the trained modality ``a``, the frozen
    modality ``b`` (and optionally the frozen embeddings that define the weights). Use it
    instead of :class:`CLIPLoss` when one tower is frozen (LiT-style) and semantically close
    pairs in the batch should count as partial positives rather than negatives.

    Examples:
        >>> import torch
        >>> loss = CWCLLoss()(torch.randn(8, 32), torch.randn(8, 32))
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        learnable: bool = True,
        symmetric: bool = True,
        weight_fn: Callable[[Tensor], Tensor] = shifted_cosine,
        weight_temperature: float | None = None,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        check_values: bool = True,
    ) -> None:
        tau = LearnableTemperature(init=temperature)
        tau.log_inverse.requires_grad_(learnable)
        super().__init__(
            temperature=tau,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            check_values=check_values,
        )
        self.weight_fn = _weight_kernel(weight_fn, weight_temperature)
        self.symmetric = symmetric

    def forward(self, a: Tensor, b: Tensor, weight_embeddings: Tensor | None = None) -> Tensor:
        """Loss of paired ``(B, d)`` embeddings (weights from ``b`` or ``weight_embeddings``)."""
        return cwcl(
            a,
            b,
            weight_embeddings=weight_embeddings,
            temperature=self.tau(),
            symmetric=self.symmetric,
            weight_fn=self.weight_fn,
            **self.options(),
        )
