"""Multi-Similarity loss and its pair miner (Wang et al., CVPR 2019).

The miner keeps, per anchor, the *informative* pairs relative to the anchor's own hardest pairs
(margin ``epsilon``); the loss weights the kept pairs with soft-plus-like log-sum-exps. Miner and
loss are separate, as in pytorch-metric-learning: the miner returns index tuples
``(a1, p, a2, n)`` that the loss accepts as ``indices_tuple``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_positive,
    check_reduction,
    reduce,
    validate_labeled,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare

#: ``(a1, p, a2, n)``: anchor/positive index pairs, then anchor/negative index pairs.
IndicesTuple = tuple[Tensor, Tensor, Tensor, Tensor]


def _similarity(embeddings: Tensor, normalize: bool) -> Tensor:
    """``(B, B)`` cosine (or dot-product) similarity, accumulated in fp32 for fp16/bf16."""
    x = prepare(embeddings, normalize)
    return x @ x.t()


def label_pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Positive and negative pair masks ``(B, B)`` from class labels, self-pairs excluded.

    Integer labels ``(B,)``: positives share the label. Multi-label 0/1 ``(B, L)``: positives share
    at least one label. Negatives are every other pair except ``i == j``.
    """
    if labels.ndim == 1:
        same = labels[:, None] == labels[None, :]
    else:
        hot = (labels != 0).float()
        same = (hot @ hot.t()) > 0
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same & ~eye


def _check_finite_number(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_inputs(
    embeddings: Tensor, labels: Tensor, normalize: bool, check_values: bool
) -> ValueChecks:
    if labels is None:
        raise ValueError("labels must be a torch.Tensor, got None")
    return validate_labeled(
        embeddings, labels, min_rows=2, normalize=normalize, check_values=check_values
    )


def _check_options(alpha: float, beta: float, base: float) -> None:
    check_positive(alpha, "alpha")
    check_positive(beta, "beta")
    _check_finite_number(base, "base")


def multi_similarity_mine(
    embeddings: Tensor,
    labels: Tensor,
    *,
    epsilon: float = 0.1,
    normalize: bool = True,
    check_values: bool = True,
) -> IndicesTuple:
    r"""Multi-Similarity pair mining: keep the pairs that violate the anchor's hardest pairs.

    For anchor ``i`` with positives ``P_i`` and negatives ``N_i`` (cosine similarity ``S``)::

        keep negative n  if  S_in + ε > min_{p ∈ P_i} S_ip
        keep positive p  if  S_ip - ε < max_{n ∈ N_i} S_in

    An anchor without positives keeps no negatives, and one without negatives keeps no positives.
    Matches ``pytorch_metric_learning.miners.MultiSimilarityMiner(epsilon)`` (same pairs; the order
    inside the returned tensors differs: ours is row-major). Default ``epsilon=0.1`` (paper and
    pytorch-metric-learning). Runs without gradient; memory ``O(B²)``.

    Args:
        embeddings: ``(B, d)`` embeddings.
        labels: ``(B,)`` integer labels or ``(B, L)`` 0/1 multi-label matrix.
        epsilon: Mining margin ``ε``.
        normalize: Use cosine similarity (``True``) or raw dot products.
        check_values: Check for NaN/inf (one host sync).

    Returns:
        ``(a1, p, a2, n)`` int64 index tensors: pairs ``(a1[k], p[k])`` are kept positives and
        ``(a2[k], n[k])`` kept negatives.

    Raises:
        ValueError: On bad shapes/dtypes, non-finite values, or a non-finite ``epsilon``.

    Example:
        >>> emb, lab = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> a1, p, a2, n = multi_similarity_mine(emb, lab)
    """
    checks = _check_inputs(embeddings, labels, normalize, check_values)
    _check_finite_number(epsilon, "epsilon")
    checks.run()
    with torch.no_grad():
        sim = _similarity(embeddings, normalize)  # (B, B)
        pos, neg = label_pair_masks(labels)  # (B, B) bool each
        hardest_neg = sim.masked_fill(~neg, float("-inf")).amax(dim=1, keepdim=True)  # (B, 1)
        easiest_pos = sim.masked_fill(~pos, float("inf")).amin(dim=1, keepdim=True)  # (B, 1)
        keep_pos = pos & (sim - epsilon < hardest_neg)
        keep_neg = neg & (sim + epsilon > easiest_pos)
        a1, p = torch.nonzero(keep_pos, as_tuple=True)
        a2, n = torch.nonzero(keep_neg, as_tuple=True)
    return a1, p, a2, n


def _masks_from_indices(
    indices_tuple: IndicesTuple, labels: Tensor, checks: ValueChecks
) -> tuple[Tensor, Tensor]:
    if not isinstance(indices_tuple, tuple) or len(indices_tuple) != 4:
        raise ValueError("indices_tuple must be a tuple (a1, p, a2, n) of four index tensors")
    names = ("a1", "p", "a2", "n")
    for name, idx in zip(names, indices_tuple, strict=True):
        if not isinstance(idx, torch.Tensor) or idx.ndim != 1 or idx.is_floating_point():
            raise ValueError(f"indices_tuple: {name} must be a 1-D integer tensor")
    a1, p, a2, n = indices_tuple
    if a1.shape != p.shape or a2.shape != n.shape:
        raise ValueError(
            f"indices_tuple: a1/p and a2/n must have equal lengths, got "
            f"{a1.numel()}/{p.numel()} and {a2.numel()}/{n.numel()}"
        )
    b = labels.shape[0]
    pos_mask = torch.zeros(b, b, dtype=torch.bool, device=labels.device)
    neg_mask = torch.zeros_like(pos_mask)
    for name, idx in zip(names, indices_tuple, strict=True):
        checks.require(
            ((idx >= 0) & (idx < b)).all(), f"indices_tuple: {name} has indices outside [0, {b})"
        )
    # Out-of-range indices are clamped so that the masks can be built; verify() raises on them.
    a1, p, a2, n = (idx.clamp(0, max(b - 1, 0)) for idx in indices_tuple)
    pos_mask[a1, p] = True
    neg_mask[a2, n] = True
    label_pos, label_neg = label_pair_masks(labels)
    checks.require(
        ~(pos_mask & ~label_pos).any(),
        "indices_tuple: a positive pair (a1, p) is not a positive under labels",
    )
    checks.require(
        ~(neg_mask & ~label_neg).any(),
        "indices_tuple: a negative pair (a2, n) is not a negative under labels",
    )
    return pos_mask, neg_mask


@full_precision
def multi_similarity_loss(
    embeddings: Tensor,
    labels: Tensor,
    indices_tuple: IndicesTuple | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    normalize: bool = True,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""Multi-Similarity loss.

    .. math::
        \ell_i = \frac{1}{\alpha}\log\Big[1 + \sum_{p\in P_i} e^{-\alpha(S_{ip}-\lambda)}\Big]
               + \frac{1}{\beta}\log\Big[1 + \sum_{n\in N_i} e^{\beta(S_{in}-\lambda)}\Big]

    with ``λ = base`` and ``S`` the cosine similarity. ``P_i``/``N_i`` are all label positives
    (excluding ``i`` itself) and negatives, or the pairs of ``indices_tuple`` (e.g. from
    :func:`multi_similarity_mine`). No softmax denominator: the "1 +" plays that role. An anchor
    with an empty set gets 0 for that term; ``reduction='mean'`` averages over **all** ``B``
    anchors (including those with empty sets), ``'none'`` returns ``(B,)``.

    Defaults ``alpha=2, beta=50, base=0.5`` follow pytorch-metric-learning's
    ``MultiSimilarityLoss``; the official code (MalongTech/research-ms-loss) uses
    ``scale_neg=40``. Values and gradients match ``MultiSimilarityLoss(alpha, beta, base)``
    with and without a miner's ``indices_tuple`` (except that pytorch-metric-learning returns 0
    when every index tensor has at most one element). The official code instead drops anchors
    whose mined sets are empty from the numerator but still divides by ``B``, which gives the
    same value when mining leaves both sets non-empty or both empty.

    Memory ``O(B²)`` (dense similarity matrix; metric-learning batch sizes).

    Args:
        embeddings: ``(B, d)`` embeddings.
        labels: ``(B,)`` integer labels or ``(B, L)`` 0/1 multi-label matrix.
        alpha: Positive scale ``α > 0``.
        beta: Negative scale ``β > 0``.
        base: Similarity margin ``λ``.
        indices_tuple: Optional ``(a1, p, a2, n)`` pairs to use instead of all label pairs.
        normalize: Cosine similarity (``True``) or raw dot product.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        check_values: Check NaN/inf, that the batch has a positive pair, and that
            ``indices_tuple`` agrees with ``labels`` (host syncs).

    Returns:
        The loss (fp32 for fp16/bf16 inputs).

    Raises:
        ValueError: On bad shapes/dtypes, non-finite values, bad hyper-parameters, a batch
            without any positive pair, or an ``indices_tuple`` inconsistent with ``labels``.

    Example:
        >>> emb, lab = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = multi_similarity_loss(emb, lab, indices_tuple=multi_similarity_mine(emb, lab))
    """
    checks = _check_inputs(embeddings, labels, normalize, check_values)
    _check_options(alpha, beta, base)
    check_reduction(reduction)
    label_pos, label_neg = label_pair_masks(labels)  # (B, B) bool each
    checks.require(
        label_pos.any(), "labels: the batch has no positive pair (every label is unique)"
    )
    if indices_tuple is None:
        pos_mask, neg_mask = label_pos, label_neg
    else:
        pos_mask, neg_mask = _masks_from_indices(indices_tuple, labels, checks)
    sim = _similarity(embeddings, normalize)  # (B, B)
    pos_term = _log_one_plus_sum_exp(-alpha * (sim - base), pos_mask) / alpha  # (B,)
    neg_term = _log_one_plus_sum_exp(beta * (sim - base), neg_mask) / beta  # (B,)
    return checks.verify(reduce(pos_term + neg_term, reduction))


def _log_one_plus_sum_exp(logits: Tensor, mask: Tensor) -> Tensor:
    """Row-wise ``log(1 + Σ_{mask} exp(logits))``; 0 for empty rows, finite gradients."""
    masked = logits.masked_fill(~mask, float("-inf"))  # (B, B)
    one = torch.zeros_like(masked[:, :1])  # (B, 1): the "1 +" term, exp(0)
    return torch.logsumexp(torch.cat([masked, one], dim=1), dim=1)  # (B,)


class MultiSimilarityMiner(nn.Module):
    """Module form of :func:`multi_similarity_mine` (no parameters, no state).

    Matches ``pytorch_metric_learning.miners.MultiSimilarityMiner(epsilon)``. Inputs:
    ``forward(embeddings, labels)``; returns ``(a1, p, a2, n)`` for :class:`MultiSimilarityLoss`.

    Example:
        >>> miner, loss_fn = MultiSimilarityMiner(), MultiSimilarityLoss()
        >>> emb, lab = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(emb, lab, miner(emb, lab))
    """

    def __init__(
        self, *, epsilon: float = 0.1, normalize: bool = True, check_values: bool = True
    ) -> None:
        super().__init__()
        _check_finite_number(epsilon, "epsilon")
        self.epsilon = epsilon
        self.normalize = normalize
        self.check_values = check_values

    def forward(self, embeddings: Tensor, labels: Tensor) -> IndicesTuple:
        """Mine the informative pairs of a batch."""
        return multi_similarity_mine(
            embeddings,
            labels,
            epsilon=self.epsilon,
            normalize=self.normalize,
            check_values=self.check_values,
        )


class MultiSimilarityLoss(LossModule):
    """Multi-Similarity loss (Wang et al., CVPR 2019); wraps :func:`multi_similarity_loss`.

    Inputs: ``forward(embeddings, labels, indices_tuple=None)``. If ``miner`` is given and
    ``forward`` gets no ``indices_tuple``, the miner's pairs are used.

    Reference: X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott, "Multi-Similarity Loss with
    General Pair Weighting for Deep Metric Learning", CVPR 2019. https://arxiv.org/abs/1904.06627

    Example:
        >>> loss_fn = MultiSimilarityLoss(miner=MultiSimilarityMiner(epsilon=0.1))
        >>> emb, lab = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(emb, lab)
    """

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        normalize: bool = True,
        reduction: Reduction = "mean",
        check_values: bool = True,
        miner: MultiSimilarityMiner | None = None,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, check_values=check_values)
        _check_options(alpha, beta, base)
        self.alpha = alpha
        self.beta = beta
        self.base = base
        self.miner = miner

    def forward(
        self, embeddings: Tensor, labels: Tensor, indices_tuple: IndicesTuple | None = None
    ) -> Tensor:
        """Loss of ``(B, d)`` embeddings with ``(B,)`` / ``(B, L)`` labels (and mined pairs)."""
        if indices_tuple is None and self.miner is not None:
            indices_tuple = self.miner(embeddings, labels)  # (a1, p, a2, n)
        return multi_similarity_loss(
            embeddings,
            labels,
            indices_tuple,
            alpha=self.alpha,
            beta=self.beta,
            base=self.base,
            **self.options(),
        )
