"""InfoNCE with per-pair weighted negatives: MEOW's cluster weights and AdaMEOW's learned weights.

References:
    - [0] Yu et al., "Heterogeneous Graph Contrastive Learning with Meta-path Contexts and
      Weighted Negative Samples" (MEOW), SDM 2023; and its journal version with adaptive weights
      (AdaMEOW), TKDE 2024. ``jianxiangyu/MEOW`` ``code_meow/module/contrast.py::InfoNce``,
      ``code_adameow/module/adameow.py::weight_InfoNce``.

The weights enter the denominator only, as ``Σ_j w_ij exp(s_ij) = Σ_j exp(s_ij + log w_ij)``:

* **compact, constant weights** (MEOW's cluster counts) are a pair rule whose tiles carry
  ``log_weight`` — they run on the similarity engine (``O(B·d)`` on the tiled path);
* **learned weights** (AdaMEOW's MLP of the two embeddings) need a gradient w.r.t. the weights,
  which the engine's tiled backward does not give (it treats pair rules as constants). They run
  on tiles of the same size under activation checkpointing: each tile's log-sum-exp is
  recomputed in backward, so memory is ``O((n + m)·d + n·m / tile + tile²·h)`` (``h``: the
  weight network's width), never the ``n × m`` weight matrix with its activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_chunk_size,
    check_module_dtype,
    check_reduction,
    reduce,
    validate_pair,
)
from contrastkit.engine import PairRule, TilePairs, apply_tile, pairwise_lse, safe_logsumexp
from contrastkit.engine.lse import DENSE_MAX_PAIRS, default_tile
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature

#: ``(rows (r, d), cols (c, d)) -> (r, c)`` non-negative weights of the denominator terms.
PairWeightFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class ClusterNegativeWeights:
    """MEOW's negative weights from ``K`` clusterings, as a pair rule (log-weights per tile).

    ``w_ij = K - #{k : row_assignments[i, k] == col_assignments[j, k]}``: a pair that shares
    a cluster in every clustering (the anchor itself, in particular) gets weight 0 and leaves
    the denominator; a pair never clustered together gets weight ``K``.

    Attributes:
        row_assignments: ``(n, K)`` integer cluster ids of the anchors in each clustering.
        col_assignments: ``(m, K)`` integer cluster ids of the candidates.
        dtype: floating dtype of the log-weights (:func:`weighted_info_nce` sets it to the
            dtype of the logits, so float64 inputs get float64 log-weights).
    """

    row_assignments: Tensor
    col_assignments: Tensor
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("row_assignments", "col_assignments"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or value.ndim != 2 or value.is_floating_point():
                raise ValueError(
                    f"{name} must be an integer tensor of shape (batch, num_clusterings), got "
                    f"{getattr(value, 'dtype', type(value).__name__)} "
                    f"{tuple(getattr(value, 'shape', ()))}"
                )
        if self.row_assignments.shape[1] != self.col_assignments.shape[1]:
            raise ValueError(
                "row_assignments and col_assignments must have the same number of clusterings, "
                f"got {self.row_assignments.shape[1]} and {self.col_assignments.shape[1]}"
            )
        if self.row_assignments.shape[1] < 1:
            raise ValueError("row_assignments needs at least one clustering (K >= 1)")

    @classmethod
    def from_assignments(cls, assignments: Tensor) -> ClusterNegativeWeights:
        """The rule for anchors and candidates that are the same samples (MEOW's setting)."""
        return cls(assignments, assignments)

    @property
    def has_weights(self) -> bool:
        """False: these are denominator log-weights, not positive weights."""
        return False

    def tile(self, rows: slice, cols: slice) -> TilePairs:
        """``log w_ij`` for the tile; pairs with ``w_ij = 0`` are excluded."""
        row = self.row_assignments[rows]  # (r, K)
        col = self.col_assignments[cols]  # (c, K)
        same = (row[:, None, :] == col[None, :, :]).sum(-1)  # (r, c) clusterings shared
        weight = self.row_assignments.shape[1] - same  # (r, c) in 0..K
        log_weight = torch.log(weight.clamp_min(1).to(self.dtype))
        return TilePairs(exclude=weight == 0, log_weight=log_weight)


class PairMLPWeights(nn.Module):
    """AdaMEOW's learned negative weights ``w_ij = σ(MLP(z_i + z_j))``.

    The MLP is ``Linear(dim, hidden) → tanh → Linear(hidden, 1) → sigmoid`` (AdaMEOW:
    ``hidden = 16``). Its first layer is linear, so ``W(z_i + z_j) = W z_i + W z_j`` is
    computed per row and per column: a ``(r, c)`` tile costs ``O(r·c·hidden)``, never
    ``O(r·c·dim)``.

    Args:
        dim: embedding dimension.
        hidden: width of the hidden layer.

    Examples:
        >>> weights = PairMLPWeights(16)
        >>> weights(torch.randn(4, 16), torch.randn(5, 16)).shape
        torch.Size([4, 5])
    """

    def __init__(self, dim: int, *, hidden: int = 16) -> None:
        super().__init__()
        for value, name in ((dim, "dim"), (hidden, "hidden")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.first = nn.Linear(dim, hidden)
        self.second = nn.Linear(hidden, 1)

    def forward(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Weights ``(r, c)`` of row embeddings ``(r, d)`` against column embeddings ``(c, d)``."""
        h_rows = rows @ self.first.weight.T  # (r, h)
        h_cols = cols @ self.first.weight.T + self.first.bias  # (c, h)
        hidden = torch.tanh(h_rows[:, None, :] + h_cols[None, :, :])  # (r, c, h)
        return torch.sigmoid(self.second(hidden).squeeze(-1))  # (r, c)


def _tile_lse(
    queries: Tensor,
    rows: Tensor,
    cols: Tensor,
    weight_fn: PairWeightFn,
    rule: PairRule | None,
    row_slice: slice,
    col_slice: slice,
    check_values: bool,
) -> Tensor:
    """``log Σ_j w_ij exp(s_ij)`` of one tile, with learned weights (and an optional rule)."""
    logits = queries @ cols.T  # (r, c)
    weight = weight_fn(rows, cols)  # (r, c)
    if weight.shape != logits.shape:
        raise ValueError(
            f"weight_fn must return shape {tuple(logits.shape)} (rows × cols), "
            f"got {tuple(weight.shape)}"
        )
    if check_values and not bool((weight >= 0).all()):
        raise ValueError("weight_fn must return non-negative weights, got negative or NaN values")
    weight = weight.to(logits.dtype)
    tiny = torch.finfo(logits.dtype).tiny
    log_weight = torch.where(  # log 0 = -inf without a NaN gradient
        weight > 0, torch.log(weight.clamp_min(tiny)), torch.full_like(weight, float("-inf"))
    )
    if rule is not None:
        tile = rule.tile(row_slice, col_slice)
        logits = apply_tile(
            logits,
            TilePairs(
                exclude=tile.exclude,
                log_weight=None if tile.log_weight is None else tile.log_weight.to(logits.dtype),
            ),
        )
    return safe_logsumexp(logits + log_weight, 1)  # (r,)


def _learned_weight_lse(
    queries: Tensor,
    rows: Tensor,
    cols: Tensor,
    weight_fn: PairWeightFn,
    rule: PairRule | None,
    chunk_size: int | None,
    check_values: bool,
) -> Tensor:
    """Row log-sum-exps with learned weights: dense, or checkpointed tiles merged per row."""
    n, m = queries.shape[0], cols.shape[0]
    if chunk_size is None and n * m <= DENSE_MAX_PAIRS:
        everything = slice(None)
        return _tile_lse(queries, rows, cols, weight_fn, rule, everything, everything, check_values)
    tile = chunk_size if chunk_size is not None else default_tile(queries.device)
    # Split once (not a slice per tile): each slice's backward would allocate a full-size
    # gradient, while one split's backward concatenates the chunk gradients once.
    query_chunks, row_chunks = torch.split(queries, tile), torch.split(rows, tile)
    col_chunks = torch.split(cols, tile)
    row_lse = []
    for r, (q_r, rows_r) in enumerate(zip(query_chunks, row_chunks, strict=True)):
        r0 = r * tile
        parts = []
        for c, cols_c in enumerate(col_chunks):
            c0 = c * tile
            part = checkpoint(
                _tile_lse,
                q_r,
                rows_r,
                cols_c,
                weight_fn,
                rule,
                slice(r0, r0 + q_r.shape[0]),
                slice(c0, c0 + cols_c.shape[0]),
                check_values,
                use_reentrant=False,
            )
            parts.append(part)  # (r,) one tile's log-sum-exp
        row_lse.append(safe_logsumexp(torch.stack(parts, 1), 1))  # (r,)
    return torch.cat(row_lse)


@full_precision
def weighted_info_nce(
    a: Tensor,
    b: Tensor,
    *,
    negative_weights: PairRule | None = None,
    weight_fn: PairWeightFn | None = None,
    temperature: float | Tensor = 0.9,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """InfoNCE whose denominator terms are weighted per pair (MEOW / AdaMEOW).

    With ``s_ij = <a_i, b_j> / τ`` and weights ``w_ij ≥ 0`` (the product of the rule's
    ``exp(log_weight)`` and ``weight_fn``'s output, 1 where neither is given)::

        ℓ_i = -log( exp(s_ii) / Σ_j w_ij exp(s_ij) )

    The sum runs over **all** columns ``j``, the positive ``j = i`` included with its own
    weight ``w_ii``: MEOW's cluster weights give ``w_ii = 0`` (the positive leaves the
    denominator), AdaMEOW's learned weights give ``w_ii = σ(MLP(2 z_i)) > 0``. The numerator is
    unweighted. This is exactly the reference normalisation: MEOW's
    ``-log(pos / (N · mean_j(w_ij · dots_ij)))`` (``N · mean = Σ``) and AdaMEOW's
    ``-log(pos / Σ_j w_ij · dots_ij)``, ``dots = exp(z_a z_bᵀ / τ)``; MEOW's ProtoNCE term is
    not part of this loss. With no weights it is :func:`contrastkit.info_nce`.

    Reduction: mean over anchors (the reference); ``'none'`` returns ``(B,)``.

    Defaults: ``τ = 0.9`` (AdaMEOW's DBLP/AMiner/IMDB configs; 1.0 on ACM).

    Memory: ``negative_weights`` alone runs on the similarity engine (tiled, ``O(B·d)``);
    ``weight_fn`` runs on checkpointed tiles (see the module docstring) because its weights
    need gradients, which the engine's tiled backward does not propagate.

    Args:
        a: ``(B, d)`` anchors (MEOW: the fine-grained view).
        b: ``(B, d)`` positives, row-aligned (MEOW: the coarse view); all rows are candidates.
        negative_weights: a pair rule whose tiles give ``log_weight`` / ``exclude`` (constant
            weights from compact inputs), e.g. :class:`ClusterNegativeWeights`.
        weight_fn: ``(rows (r, d), cols (c, d)) -> (r, c)`` non-negative, differentiable weights
            of the normalised embeddings, e.g. :class:`PairMLPWeights`.
        temperature: ``τ`` > 0, float or scalar tensor.
        normalize: L2-normalise first (the references do).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check NaN/inf, non-negative learned weights and that every anchor's
            denominator has positive total weight (host syncs).

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``).

    Raises:
        ValueError: on mismatched shapes, B < 2, non-finite values, τ ≤ 0, a bad reduction,
            negative learned weights, or an anchor whose weights are all zero.

    Peers: none on PyPI; tested against float64 loop transcriptions of the two reference
    functions.

    Examples:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> clusters = torch.randint(0, 3, (8, 2))  # 2 clusterings of the batch
        >>> loss = weighted_info_nce(
        ...     a, b, negative_weights=ClusterNegativeWeights.from_assignments(clusters)
        ... )
        >>> loss = weighted_info_nce(a, b, weight_fn=PairMLPWeights(16))  # AdaMEOW
    """
    checks = _validate(a, b, normalize, check_values, temperature, chunk_size, reduction)
    check_module_dtype(weight_fn, "weight_fn", a)
    if weight_fn is not None:
        checks.run()  # the inputs first: weight_fn's outputs are checked tile by tile
    if isinstance(negative_weights, ClusterNegativeWeights) and (
        negative_weights.row_assignments.shape[0] != a.shape[0]
        or negative_weights.col_assignments.shape[0] != b.shape[0]
    ):
        raise ValueError(
            f"negative_weights assignments must have {a.shape[0]} rows (one per sample), got "
            f"{negative_weights.row_assignments.shape[0]} and "
            f"{negative_weights.col_assignments.shape[0]}"
        )
    return checks.verify(
        _weighted_losses(
            a,
            b,
            negative_weights,
            weight_fn,
            temperature,
            normalize,
            reduction,
            chunk_size,
            check_values,
            checks,
            "negative_weights/weight_fn",
        )  # fmt: skip
    )


def _validate(
    a: Tensor,
    b: Tensor,
    normalize: bool,
    check_values: bool,
    temperature: float | Tensor,
    chunk_size: int | None,
    reduction: str,
) -> ValueChecks:
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    check_chunk_size(chunk_size)
    return checks


def _weighted_losses(
    a: Tensor,
    b: Tensor,
    negative_weights: PairRule | None,
    weight_fn: PairWeightFn | None,
    temperature: float | Tensor,
    normalize: bool,
    reduction: Reduction,
    chunk_size: int | None,
    check_values: bool,
    checks: ValueChecks,
    weights_name: str,
) -> Tensor:
    """Reduced losses of validated inputs (``weights_name`` names the weights in errors)."""
    za, zb = prepare(a, normalize, checks), prepare(b, normalize, checks)  # (B, d)
    queries = scale_by_temperature(za, temperature)  # (B, d)
    positive = (queries * zb).sum(-1)  # (B,) s_ii, unweighted numerator
    if isinstance(negative_weights, ClusterNegativeWeights):
        negative_weights = replace(negative_weights, dtype=queries.dtype)
    if weight_fn is None:
        stats = pairwise_lse(queries, zb, negative_weights, chunk_size=chunk_size).rows
        assert stats is not None
        denominator = stats.lse  # (B,) log Σ_j w_ij exp(s_ij)
    else:
        denominator = _learned_weight_lse(
            queries, za, zb, weight_fn, negative_weights, chunk_size, check_values
        )
    checks.require(
        (denominator > float("-inf")).all(),
        f"{weights_name}: some anchor has zero total weight in its denominator "
        "(e.g. it shares a cluster with every sample in every clustering)",
    )
    return reduce(denominator - positive, reduction)


@full_precision
def meow_loss(
    a: Tensor,
    b: Tensor,
    assignments: Tensor,
    *,
    temperature: float | Tensor = 0.9,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """MEOW's weighted InfoNCE: :func:`weighted_info_nce` with cluster-count weights.

    ``w_ij = K - #{k : assignments[i, k] == assignments[j, k]}`` over ``K`` clusterings of the
    batch (MEOW runs k-means with ``K`` different cluster counts on ``b``); ``w_ii = 0``, so
    the positive is **not** in the denominator.

    Args:
        a: ``(B, d)`` anchors.
        b: ``(B, d)`` positives, row-aligned.
        assignments: ``(B, K)`` integer cluster ids of each sample in each clustering.
        temperature: ``τ`` > 0.
        normalize: L2-normalise first.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check NaN/inf and that every anchor keeps a weighted negative.

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``).

    Raises:
        ValueError: as :func:`weighted_info_nce`, and on assignments that are not ``(B, K)``
            integers.

    Examples:
        >>> loss = meow_loss(torch.randn(8, 16), torch.randn(8, 16), torch.randint(0, 3, (8, 2)))
    """
    checks = _validate(a, b, normalize, check_values, temperature, chunk_size, reduction)
    if not isinstance(assignments, Tensor) or assignments.ndim != 2:
        raise ValueError(
            "assignments must be an integer tensor of shape (batch, num_clusterings), got "
            f"{getattr(assignments, 'shape', type(assignments).__name__)}"
        )
    if assignments.shape[0] != a.shape[0] or assignments.shape[1] < 1:
        raise ValueError(
            f"assignments must have shape ({a.shape[0]}, K >= 1), got {tuple(assignments.shape)}"
        )
    if assignments.is_floating_point():
        raise ValueError(f"assignments must be integer cluster ids, got {assignments.dtype}")
    weights = ClusterNegativeWeights.from_assignments(assignments)
    return checks.verify(
        _weighted_losses(
            a,
            b,
            weights,
            None,
            temperature,
            normalize,
            reduction,
            chunk_size,
            check_values,
            checks,
            "assignments",
        )  # fmt: skip
    )


class WeightedInfoNCELoss(LossModule):
    """Module wrapper of :func:`weighted_info_nce` (MEOW / AdaMEOW weighted negatives).

    Inputs: ``forward(a, b, negative_weights=None)`` with paired ``(B, d)`` rows and an
    optional per-batch pair rule (e.g. ``ClusterNegativeWeights.from_assignments(clusters)``
    for MEOW). A learned ``weight_fn`` that is an ``nn.Module`` (e.g. :class:`PairMLPWeights`
    for AdaMEOW) is registered as a submodule, so its parameters train with the loss. Use it
    instead of :class:`InfoNCELoss` when some in-batch negatives are likely false negatives
    (same cluster / class) and should count less rather than be removed.

    Examples:
        >>> loss_fn = WeightedInfoNCELoss(weight_fn=PairMLPWeights(16))  # AdaMEOW
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(
        self,
        *,
        weight_fn: PairWeightFn | None = None,
        temperature: float | Tensor | nn.Module = 0.9,
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
        self.weight_fn = weight_fn

    def forward(self, a: Tensor, b: Tensor, negative_weights: PairRule | None = None) -> Tensor:
        """Loss of paired ``(B, d)`` views under the negative weights."""
        return weighted_info_nce(
            a,
            b,
            negative_weights=negative_weights,
            weight_fn=self.weight_fn,
            temperature=self.tau(),
            **self.options(),
        )
