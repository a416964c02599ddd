"""GroCo: group-wise contrastive learning by differentiable sorting ("Learning by Sorting").

- [0] Shvetsova, Petersen, Kukleva, Schiele, Kuehne, "Learning by Sorting: Self-supervised Learning
  with Group Ordering Constraints", ICCV 2023, https://arxiv.org/abs/2301.02009
- [1] Reference code: https://github.com/ninatu/learning_by_sorting
  (``learning_by_sorting/losses/groco.py``)
- [2] Differentiable sorting networks: Petersen et al., ICML 2021 / ICLR 2022,
  https://github.com/Felix-Petersen/diffsort (``DiffSortNet``)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._checks import (
    Reduction,
    check_count,
    check_reduction,
    check_tensor,
    reduce,
    validate_embeddings,
    validate_views,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare
from contrastkit.losses._sorting_network import (
    Distribution,
    NetworkType,
    check_sorter_args,
    soft_sort,
)


def _check_topk(topk_neg: int) -> None:
    check_count(topk_neg, "topk_neg")


def _sorting_bce(
    pos: Tensor,
    neg: Tensor,
    network: NetworkType,
    steepness: float,
    distribution: Distribution,
) -> Tensor:
    """Per-row GroCo loss for selected positive ``(N, P)`` and negative ``(N, M)`` scores."""
    n_neg = neg.shape[1]
    dtype = torch.promote_types(pos.dtype, torch.float32)  # the loss runs in full precision
    pos = pos.to(dtype).sort(dim=1).values  # (N, P), ascending
    neg = neg.to(dtype).sort(dim=1).values  # (N, M), ascending
    scores = torch.cat((neg, pos), dim=1)  # (N, M + P): ground truth = already sorted
    _, perm = soft_sort(
        scores, network=network, steepness=steepness, distribution=distribution
    )  # (N, n, n): perm[b, e, j] = P(element e lands at position j)
    p_neg = perm[:, :, :n_neg].sum(dim=2).clamp(0, 1)  # (N, n): P(element in a negative rank)
    p_pos = perm[:, :, n_neg:].sum(dim=2).clamp(0, 1)  # (N, n): P(element in a positive rank)
    is_pos = torch.zeros_like(p_pos)
    is_pos[:, n_neg:] = 1.0
    bce_pos = F.binary_cross_entropy(p_pos, is_pos, reduction="none").mean(dim=1)  # (N,)
    bce_neg = F.binary_cross_entropy(p_neg, 1.0 - is_pos, reduction="none").mean(dim=1)
    return 0.5 * (bce_pos + bce_neg)  # (N,)


@full_precision
def groco_sorting_loss(
    positive_scores: Tensor,
    negative_scores: Tensor,
    *,
    topk_neg: int | None = None,
    steepness: float = 1.0,
    network: NetworkType = "odd_even",
    distribution: Distribution = "cauchy",
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""GroCo's sorting loss on precomputed anchor-positive and anchor-negative similarities.

    For each anchor row: take its ``P`` positive scores and its ``topk_neg`` largest negative
    scores, sort each group ascending and concatenate ``[negatives, positives]``: the target
    order is "every negative below every positive", which this sequence already satisfies. A
    differentiable sorting network gives the soft permutation ``P_soft`` (``n x n``,
    ``n = topk_neg + P``); for each element ``e``,
    ``p_e = sum_{j >= topk_neg} P_soft[e, j]`` is its probability of landing in a positive rank
    (``1 - p_e`` in a negative rank, up to rounding), with target ``t_e = [e is a positive]``:

    .. math:: L = \tfrac12\left[\mathrm{BCE}(p, t) + \mathrm{BCE}(p^{neg}, 1 - t)\right],

    each BCE averaged over the ``n`` elements, probabilities clipped to ``[0, 1]`` (as in the
    reference). Gradients reach the scores through the relaxed comparators; the loss is zero
    only in the hard limit of perfectly separated groups.

    Args:
        positive_scores: ``(N, P)`` similarities of each anchor to its positives.
        negative_scores: ``(N, M)`` similarities to candidate negatives (remove the anchor
            itself and any other non-negative beforehand).
        topk_neg: number of hardest negatives kept (``None``: all ``M``).
        steepness: inverse temperature of the sorting relaxation (reference default 1).
        network: sorting network, ``'odd_even'`` (reference) or ``'bitonic'``.
        distribution: comparator relaxation, ``'cauchy'`` (reference), ``'logistic'``,
            ``'reciprocal'`` or ``'gaussian'``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per anchor).
        check_values: check scores for NaN/inf (a host sync).

    Returns:
        The loss (float32 for half/float32 inputs).

    Raises:
        ValueError: bad shapes, ``topk_neg`` > ``M``, non-finite scores, bad hyper-parameters.

    Example:
        >>> import torch
        >>> pos, neg = torch.rand(4, 1), torch.rand(4, 20) - 0.5
        >>> loss = groco_sorting_loss(pos, neg, topk_neg=10)

    """
    check_reduction(reduction)
    check_sorter_args(network, distribution, steepness)
    checks = validate_embeddings(positive_scores, "positive_scores", check_values=check_values)
    check_tensor(negative_scores, "negative_scores")
    checks.finite("negative_scores", negative_scores)
    if positive_scores.shape[0] != negative_scores.shape[0]:
        raise ValueError(
            f"positive_scores and negative_scores must have one row per anchor, got "
            f"{positive_scores.shape[0]} and {negative_scores.shape[0]} rows"
        )
    n_avail = negative_scores.shape[1]
    if topk_neg is None:
        topk_neg = n_avail
    _check_topk(topk_neg)
    if topk_neg > n_avail:
        raise ValueError(
            f"topk_neg={topk_neg} exceeds the {n_avail} negatives per row of negative_scores"
        )
    checks.run()  # before the sort: binary_cross_entropy rejects NaN probabilities
    neg = negative_scores.topk(topk_neg, dim=1).values  # (N, topk)
    losses = _sorting_bce(positive_scores, neg, network, steepness, distribution)  # (N,)
    return reduce(losses, reduction)


@full_precision
def groco_loss(
    views: Tensor,
    *,
    topk_neg: int = 10,
    steepness: float = 1.0,
    stop_grad: bool = True,
    num_positive_views: int | None = None,
    anchor_views: tuple[int, ...] | None = None,
    network: NetworkType = "odd_even",
    distribution: Distribution = "cauchy",
    normalize: bool = True,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""GroCo loss for ``V`` augmented views of each sample (multi-view form of the reference).

    Each view ``v`` in turn is the anchor. For sample ``b``: the positives are the other
    full-crop views of ``b`` (views ``0..num_positive_views-1`` except ``v``), the negatives
    are view ``v`` of every other sample of the batch, of which the ``topk_neg`` most similar
    are kept; similarities are cosines. The per-anchor loss is :func:`groco_sorting_loss`'s
    and the result is averaged over anchor views (and samples for ``'mean'``).

    ``stop_grad=True`` (reference default) detaches the positives and the negatives: only the
    anchor embedding receives gradient from each term (each view still gets gradient when it is
    the anchor). There is no softmax and no denominator: the loss pushes the positive group
    above the negative group through a relaxed sort.

    Defaults (reference code/configs): ``topk_neg=10``, ``steepness=1``, ``odd_even`` network,
    ``cauchy`` relaxation (``art_lambda`` is irrelevant for it), ``stop_grad=True``, two views;
    multi-crop uses ``num_positive_views`` full crops as positives (small crops as anchors then
    have ``num_positive_views`` positives, the reference's second sorter). Distributed: the
    reference all-gathers the anchor view for the negatives; gather and use
    :func:`groco_sorting_loss` for that.

    Peers: GroCo is not packaged. The sorter reproduces ``diffsort.DiffSortNet`` (soft
    permutations equal to float64 rounding); the loss is tested against a loop reference.

    Similarity engine: not tiled. It needs the ``topk_neg`` largest negatives per row, not a
    log-sum-exp, and sorts ``topk_neg + P`` values per anchor; memory is ``O(B^2)`` for the
    negative similarities plus ``O(B n^2)`` for the soft permutations.

    Args:
        views: ``(B, V, d)`` embeddings, views of the same sample on dimension 1.
        topk_neg: number of hardest negatives per anchor (``<= B - 1``).
        steepness: inverse temperature of the sorting relaxation.
        stop_grad: detach positives and negatives.
        num_positive_views: the first ``num_positive_views`` views act as positives (full
            crops); default all ``V``.
        anchor_views: views used as anchors; default all ``V`` (reference).
        network: ``'odd_even'`` (reference) or ``'bitonic'``.
        distribution: comparator relaxation (reference ``'cauchy'``).
        normalize: use cosine similarities (L2-normalise first).
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per sample, mean over anchor views).
        check_values: check ``views`` for NaN/inf (a host sync).

    Returns:
        The loss (float32 for half/float32 inputs).

    Raises:
        ValueError: bad shapes, ``topk_neg > B - 1``, bad view indices, non-finite inputs, bad
            hyper-parameters.

    Example:
        >>> import torch
        >>> views = torch.randn(16, 2, 32, requires_grad=True)
        >>> loss = groco_loss(views, topk_neg=10)
        >>> loss.backward()

    """
    check_reduction(reduction)
    check_sorter_args(network, distribution, steepness)
    _check_topk(topk_neg)
    checks = validate_views(views, normalize=normalize, check_values=check_values)
    b, v_count, _ = views.shape
    if topk_neg > b - 1:
        raise ValueError(f"topk_neg={topk_neg} exceeds the B - 1 = {b - 1} negatives per anchor")
    n_pos = v_count if num_positive_views is None else num_positive_views
    if not isinstance(n_pos, int) or isinstance(n_pos, bool) or not 2 <= n_pos <= v_count:
        raise ValueError(
            f"num_positive_views must be an integer in [2, {v_count}], got {num_positive_views!r}"
        )
    anchors = tuple(range(v_count)) if anchor_views is None else tuple(anchor_views)
    if not anchors or not all(isinstance(v, int) and 0 <= v < v_count for v in anchors):
        raise ValueError(f"anchor_views must be view indices in [0, {v_count}), got {anchor_views}")
    x = prepare(views, normalize)  # (B, V, d)
    partners = x.detach() if stop_grad else x
    self_mask = torch.eye(b, dtype=torch.bool, device=x.device)
    scores = []
    for v in anchors:
        anchor = x[:, v]  # (B, d)
        pos_views = [p for p in range(n_pos) if p != v]
        pos = torch.einsum("bd,bpd->bp", anchor, partners[:, pos_views])  # (B, P)
        neg = anchor @ partners[:, v].T  # (B, B): same view of the other samples
        neg = neg.masked_fill(self_mask, -math.inf).topk(topk_neg, dim=1).values  # (B, topk)
        checks.require(
            torch.isfinite(torch.cat([pos, neg], dim=1)).all(),
            "views: the similarities overflow the floating-point range; normalise or rescale",
        )
        scores.append((pos, neg))
    checks.run()  # before sorting: binary_cross_entropy rejects NaN probabilities
    per_view = [
        _sorting_bce(pos, neg, network, steepness, distribution)  # (B,)
        for pos, neg in scores
    ]
    losses = torch.stack(per_view).mean(0)  # (B,)
    return reduce(losses, reduction)


class GroCoLoss(LossModule):
    """Module form of :func:`groco_loss` (group ordering by a differentiable sorting network).

    Args:
        topk_neg: number of hardest negatives per anchor (reference 10).
        steepness: inverse temperature of the sorting relaxation (reference 1).
        stop_grad: detach positives and negatives (reference True).
        num_positive_views: number of leading full-crop views used as positives (default all).
        network: ``'odd_even'`` or ``'bitonic'``.
        distribution: comparator relaxation.
        normalize: use cosine similarities.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Raises:
        ValueError: for bad hyper-parameters.

    Example:
        >>> import torch
        >>> criterion = GroCoLoss(topk_neg=5)
        >>> loss = criterion(torch.randn(8, 2, 32))

    """

    def __init__(
        self,
        *,
        topk_neg: int = 10,
        steepness: float = 1.0,
        stop_grad: bool = True,
        num_positive_views: int | None = None,
        network: NetworkType = "odd_even",
        distribution: Distribution = "cauchy",
        normalize: bool = True,
        reduction: Reduction = "mean",
        check_values: bool = True,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, check_values=check_values)
        _check_topk(topk_neg)
        check_sorter_args(network, distribution, steepness)
        if num_positive_views is not None:
            check_count(num_positive_views, "num_positive_views", minimum=2)
        self.topk_neg = topk_neg
        self.steepness = float(steepness)
        self.stop_grad = stop_grad
        self.num_positive_views = num_positive_views
        self.network: NetworkType = network
        self.distribution: Distribution = distribution

    def forward(self, views: Tensor) -> Tensor:
        """Loss of ``(B, V, d)`` views."""
        return groco_loss(
            views,
            topk_neg=self.topk_neg,
            steepness=self.steepness,
            stop_grad=self.stop_grad,
            num_positive_views=self.num_positive_views,
            network=self.network,
            distribution=self.distribution,
            **self.options(),
        )
