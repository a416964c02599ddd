"""SwAV: swapped prediction of Sinkhorn-Knopp cluster codes across crops.

- [0] Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, "Unsupervised Learning of Visual Features by
  Contrasting Cluster Assignments", NeurIPS 2020, https://arxiv.org/abs/2006.09882
- [1] Reference code: https://github.com/facebookresearch/swav (``main_swav.py``: ``train``,
  ``distributed_sinkhorn``)
- [2] Peer: lightly (``lightly.loss.swav_loss.SwaVLoss`` and ``sinkhorn``)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_count,
    check_positive,
    check_reduction,
    check_temperature,
    check_tensor,
    reduce,
    validate_embeddings,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, scale_by_temperature


def _check_iterations(iterations: int, name: str = "iterations") -> None:
    check_count(iterations, name)


@torch.no_grad()
def sinkhorn(
    scores: Tensor,
    *,
    epsilon: float = 0.05,
    iterations: int = 3,
    check_values: bool = True,
) -> Tensor:
    r"""Sinkhorn-Knopp soft codes: an equipartitioned soft assignment of samples to prototypes.

    With ``Q = exp(scores / epsilon)^T`` (``K x B``) scaled to sum to 1, each iteration
    normalises the rows (prototypes) to sum ``1 / K`` and the columns (samples) to sum ``1 / B``;
    the result is multiplied by ``B`` so that each sample's code sums to 1:

    .. code-block:: text

        Q /= sum(Q)
        repeat iterations:  Q /= row_sums(Q); Q /= K;  Q /= col_sums(Q); Q /= B
        return (B * Q)^T

    The codes are targets: computed without gradient (detached), in at least float32. The
    iterations run in the log domain (``logsumexp`` instead of sums), which is the same
    algorithm in exact arithmetic but cannot overflow or underflow to ``0 / 0`` when
    ``scores / epsilon`` spans a large range (where the reference's ``exp`` returns NaN).

    lightly's ``sinkhorn`` omits the ``/ K`` step. It is harmless: it scales every entry by the
    same factor just before a column normalisation, which cancels it; the tests show both give
    the same codes.

    Distributed: the reference all-reduces the row sums and the total over ranks; this function
    works on the scores it is given (gather them first for the reference's global codes).

    Args:
        scores: ``(B, K)`` similarities between (normalised) features and (normalised) prototypes.
        epsilon: entropic regularisation (paper default 0.05).
        iterations: Sinkhorn iterations (paper default 3).
        check_values: check ``scores`` for NaN/inf (a host sync).

    Returns:
        ``(B, K)`` codes, each row a distribution over prototypes, without gradient.

    Raises:
        ValueError: non-2-D or non-finite ``scores``, ``epsilon <= 0``, ``iterations < 1``.

    Example:
        >>> import torch
        >>> q = sinkhorn(torch.randn(8, 5))
        >>> torch.allclose(q.sum(dim=1), torch.ones(8))
        True

    """
    check_positive(epsilon, "epsilon")
    _check_iterations(iterations)
    validate_embeddings(scores, "scores", check_values=check_values).run()
    x = scores.detach().to(torch.promote_types(scores.dtype, torch.float32))
    b, k = x.shape
    log_k, log_b = math.log(k), math.log(b)
    log_q = x.T / epsilon  # (K, B), log of exp(scores / epsilon)^T
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)  # Q /= sum(Q)
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - log_k  # rows sum to 1/K
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - log_b  # cols sum to 1/B
    return torch.exp(log_q + log_b).T  # (B, K): Q *= B


def _as_crop_list(crop_scores: Sequence[Tensor] | Tensor, name: str) -> list[Tensor]:
    if isinstance(crop_scores, Tensor):
        if crop_scores.ndim != 3:
            raise ValueError(
                f"{name} must be a list of (B, K) tensors or a (n_crops, B, K) tensor, "
                f"got shape {tuple(crop_scores.shape)}"
            )
        return list(crop_scores.unbind(0))
    if not isinstance(crop_scores, Sequence) or isinstance(crop_scores, (str, bytes)):
        raise ValueError(f"{name} must be a list of tensors or a tensor, got {type(crop_scores)}")
    return list(crop_scores)


@full_precision
def swav_loss(
    crop_scores: Sequence[Tensor] | Tensor,
    queue_scores: Sequence[Tensor] | Tensor | None = None,
    *,
    temperature: float | Tensor = 0.1,
    epsilon: float = 0.05,
    sinkhorn_iterations: int = 3,
    crops_for_assign: Sequence[int] = (0, 1),
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""SwAV swapped-prediction loss over multi-crop prototype scores.

    For every crop ``i`` in ``crops_for_assign``, codes ``q_i = sinkhorn(scores_i)`` (detached)
    are predicted from every other crop ``v`` through ``p_v = softmax(scores_v / temperature)``:

    .. math::
        L = \frac{1}{|A|} \sum_{i \in A} \frac{1}{V - 1} \sum_{v \ne i}
            \frac{1}{B} \sum_b -\sum_k q_{i,bk} \log p_{v,bk}

    with ``V`` crops and ``A = crops_for_assign``. This is a cross-entropy against soft targets
    over the ``K`` prototypes; there are no per-sample negatives (the equipartition constraint of
    Sinkhorn prevents collapse). ``reduction='none'`` returns the ``(B,)`` per-sample terms
    (same averaging), whose mean is the loss.

    Prototypes belong to the model, not to the loss: pass ``scores = normalize(z) @
    normalize(C).T`` (e.g. from :class:`SwAVPrototypes`), so there is no ``normalize`` flag
    here. The reference also freezes the prototype gradient for the first iterations
    (``freeze_prototypes_niters=313``), a trainer concern.

    Queue: ``queue_scores[a]`` (``(L, K)``, scores of stored features of crop
    ``crops_for_assign[a]`` against the current prototypes) joins crop ``a``'s scores in the
    Sinkhorn step only; only the batch's codes are kept (the reference prepends the queue and
    keeps the last ``B`` rows, lightly appends it and keeps the first ``B``; Sinkhorn is
    permutation-equivariant, so both agree).

    Defaults (paper/reference code): ``temperature=0.1``, ``epsilon=0.05``,
    ``sinkhorn_iterations=3``, ``crops_for_assign=(0, 1)`` (the two high-resolution crops).

    Peer (lightly ``SwaVLoss(high_resolution_outputs, low_resolution_outputs, queue_outputs)``):
    lightly assigns codes from *every* high-resolution crop and averages the same way, so it
    equals ``swav_loss(high + low, crops_for_assign=range(len(high)))``; with two high-resolution
    crops that is this function's default. lightly's Sinkhorn omits ``/ K`` (no effect, see
    :func:`sinkhorn`). lightly returns a shape-``(1,)`` tensor; this returns a scalar.

    Similarity engine: not needed. The softmax runs over ``K`` prototypes (``B x K`` scores), not
    over a ``B x B`` similarity matrix, so memory is already ``O(B K)``.

    Args:
        crop_scores: ``V >= 2`` crops' prototype scores, a list of ``(B, K)`` tensors or a
            ``(V, B, K)`` tensor (crops may come from different resolutions).
        temperature: softmax temperature of the predictions; float or tensor, > 0.
        epsilon: Sinkhorn entropic regularisation.
        sinkhorn_iterations: Sinkhorn iterations.
        crops_for_assign: indices of the crops whose codes are targets (distinct).
        queue_scores: optional queue scores per assigned crop, ``len(crops_for_assign)`` tensors
            ``(L, K)`` or a ``(len(crops_for_assign), L, K)`` tensor.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per sample).
        check_values: check scores for NaN/inf (a host sync).

    Returns:
        The loss (float32 for half/float32 inputs).

    Raises:
        ValueError: fewer than 2 crops, mismatched shapes, bad ``crops_for_assign``, bad queue,
            non-finite scores, bad hyper-parameters.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> prototypes = SwAVPrototypes(dim=16, num_prototypes=10)
        >>> crops = [F.normalize(torch.randn(8, 16), dim=1) for _ in range(4)]
        >>> loss = swav_loss([prototypes(z) for z in crops])

    """
    check_reduction(reduction)
    _check_options(epsilon, sinkhorn_iterations, crops_for_assign)
    checks = ValueChecks(check_values, "crop_scores")
    check_temperature(temperature, checks)
    crops = _as_crop_list(crop_scores, "crop_scores")
    n_crops = len(crops)
    if n_crops < 2:
        raise ValueError(f"crop_scores needs at least 2 crops, got {n_crops}")
    for v, s in enumerate(crops):
        check_tensor(s, f"crop_scores[{v}]")
        checks.finite(f"crop_scores[{v}]", s)
        if s.shape != crops[0].shape:
            raise ValueError(
                f"crop_scores must all have shape (B, K) = {tuple(crops[0].shape)}, "
                f"got {tuple(s.shape)} for crop_scores[{v}]"
            )
    assign = list(crops_for_assign)
    if (
        not assign
        or len(set(assign)) != len(assign)
        or not all(isinstance(i, int) and 0 <= i < n_crops for i in assign)
    ):
        raise ValueError(
            f"crops_for_assign must be distinct crop indices in [0, {n_crops}), got "
            f"{tuple(crops_for_assign)}"
        )
    queues: list[Tensor] | None = None
    if queue_scores is not None:
        queues = _as_crop_list(queue_scores, "queue_scores")
        if len(queues) != len(assign):
            raise ValueError(
                f"queue_scores needs one entry per crop in crops_for_assign ({len(assign)}), "
                f"got {len(queues)}"
            )
        for a, qs in enumerate(queues):
            check_tensor(qs, f"queue_scores[{a}]")
            checks.finite(f"queue_scores[{a}]", qs)
            if qs.shape[1] != crops[0].shape[1]:
                raise ValueError(
                    f"queue_scores[{a}] must have K = {crops[0].shape[1]} columns, "
                    f"got shape {tuple(qs.shape)}"
                )
    dtype = torch.promote_types(crops[0].dtype, torch.float32)
    batch = crops[0].shape[0]
    # log-predictions of every crop: V x (B, K)
    log_p = [F.log_softmax(scale_by_temperature(s.to(dtype), temperature), dim=1) for s in crops]
    losses = crops[0].new_zeros(batch, dtype=dtype)  # (B,)
    for a, i in enumerate(assign):
        scores_i = crops[i].detach()
        if queues is not None:
            scores_i = torch.cat((scores_i, queues[a].detach().to(scores_i.dtype)))
        q = sinkhorn(scores_i, epsilon=epsilon, iterations=sinkhorn_iterations, check_values=False)[
            :batch
        ]  # (B, K), detached
        for v in range(n_crops):
            if v != i:  # predict crop i's codes from crop v
                losses = losses - (q * log_p[v]).sum(dim=1) / (n_crops - 1)  # (B,)
    losses = losses / len(assign)
    return checks.verify(reduce(losses, reduction))


def _check_options(
    epsilon: float, sinkhorn_iterations: int, crops_for_assign: Sequence[int]
) -> None:
    check_positive(epsilon, "epsilon")
    _check_iterations(sinkhorn_iterations, "sinkhorn_iterations")
    if not crops_for_assign or len(set(crops_for_assign)) != len(crops_for_assign):
        raise ValueError(
            f"crops_for_assign must be distinct crop indices, got {tuple(crops_for_assign)}"
        )


class SwAVLoss(LossModule):
    """Module form of :func:`swav_loss` (swapped prediction with Sinkhorn-Knopp codes).

    Holds no prototypes: they belong to the model (see :class:`SwAVPrototypes`).

    Args:
        temperature: softmax temperature of the predictions (paper default 0.1).
        epsilon: Sinkhorn entropic regularisation (0.05).
        sinkhorn_iterations: Sinkhorn iterations (3).
        crops_for_assign: indices of the crops whose codes are targets ((0, 1)).
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Raises:
        ValueError: for bad hyper-parameters.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> prototypes, criterion = SwAVPrototypes(16, num_prototypes=10), SwAVLoss()
        >>> crops = [F.normalize(torch.randn(8, 16), dim=1) for _ in range(2)]
        >>> loss = criterion([prototypes(z) for z in crops])

    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        crops_for_assign: Sequence[int] = (0, 1),
        reduction: Reduction = "mean",
        check_values: bool = True,
    ) -> None:
        super().__init__(temperature=temperature, reduction=reduction, check_values=check_values)
        _check_options(epsilon, sinkhorn_iterations, crops_for_assign)
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.crops_for_assign = tuple(crops_for_assign)

    def forward(
        self,
        crop_scores: Sequence[Tensor] | Tensor,
        queue_scores: Sequence[Tensor] | Tensor | None = None,
    ) -> Tensor:
        """Loss of the crops' prototype scores ``[(B, K), ...]`` (and queued scores)."""
        return swav_loss(
            crop_scores,
            queue_scores,
            temperature=self.tau(),
            epsilon=self.epsilon,
            sinkhorn_iterations=self.sinkhorn_iterations,
            crops_for_assign=self.crops_for_assign,
            **self.options(),
        )


class SwAVPrototypes(nn.Module):
    """Learnable SwAV prototypes: ``scores = normalize(z) @ normalize(C).T``.

    The reference renormalises the prototype weight in place before every step and uses a
    plain linear layer; here the weight is L2-normalised inside ``forward`` (differentiably), so
    the scores are always cosines. At a unit-norm weight both give the same scores; the
    gradient here is the reference's projected onto the tangent of the sphere.
    :meth:`normalize_` renormalises the stored weight in place (the reference recipe).

    Args:
        dim: feature dimension ``d`` (paper: 128).
        num_prototypes: number of prototypes ``K`` (paper: 3000).

    Raises:
        ValueError: for non-positive sizes.

    Example:
        >>> import torch
        >>> prototypes = SwAVPrototypes(dim=16, num_prototypes=10)
        >>> prototypes(torch.randn(4, 16)).shape
        torch.Size([4, 10])

    """

    def __init__(self, dim: int, *, num_prototypes: int = 3000) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("num_prototypes", num_prototypes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.weight = nn.Parameter(torch.empty(num_prototypes, dim))
        nn.init.normal_(self.weight)
        self.normalize_()

    @torch.no_grad()
    def normalize_(self) -> None:
        """L2-normalise the stored prototype vectors in place."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, z: Tensor) -> Tensor:
        """Return ``(B, K)`` cosine scores of features ``z`` ``(B, d)`` against the prototypes."""
        return F.normalize(z, dim=-1) @ F.normalize(self.weight, dim=1).T
