"""Singular-value spectrum and effective rank (RankMe) of an embedding, with a collapse warning.

References:
    [1] Q. Garrido, R. Balestriero, L. Najman, Y. LeCun, "RankMe: Assessing the Downstream
        Performance of Pretrained Self-Supervised Representations by Their Rank", ICML 2023.
        https://arxiv.org/abs/2210.02885
    [2] O. Roy, M. Vetterli, "The effective rank: a measure of effective dimensionality",
        EUSIPCO 2007.

"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit._checks import check_embeddings, check_positive
from contrastkit.metrics._common import check_int


class CollapseWarning(UserWarning):
    """The embedding uses only a small fraction of its dimensions (dimensional collapse)."""


@dataclass(frozen=True)
class SpectrumResult:
    """Singular values and effective rank of an embedding matrix.

    Attributes:
        singular_values: ``(min(n, d),)`` in decreasing order (float64).
        effective_rank: RankMe, ``exp(H(p))`` with ``p_k = sigma_k / sum sigma``.
        max_rank: ``min(n, d)``, the largest possible value.
        explained_variance: cumulative ``sigma_k^2 / sum sigma^2`` ``(min(n, d),)``.
        collapsed: effective rank below ``collapse_ratio * max_rank`` (or below 1.5).

    """

    singular_values: Tensor
    effective_rank: float
    max_rank: int
    explained_variance: Tensor
    collapsed: bool


def singular_values(
    x: Tensor, *, center: bool = False, chunk_size: int = 8192, check_values: bool = True
) -> Tensor:
    """Singular values of ``x`` (``(n, d)``), decreasing, in float64.

    Computed from the ``d x d`` Gram matrix ``x^T x`` accumulated over row blocks (memory
    ``O(d^2 + chunk_size * d)``); its eigenvalues are ``sigma^2``.
    ``min(n, d)`` values are returned.

    Args:
        x: embeddings ``(n, d)``.
        center: subtract the column mean first (PCA spectrum); RankMe [1] uses ``center=False``.
        chunk_size: rows per block.
        check_values: check for NaN/inf (host sync).

    Returns:
        ``(min(n, d),)`` float64 tensor.

    Raises:
        ValueError: bad shape/dtype or non-finite values.

    Example:
        >>> singular_values(torch.diag(torch.tensor([3.0, 1.0])))
        tensor([3., 1.], dtype=torch.float64)

    """
    check_embeddings(x, "x", check_finite=check_values)
    check_int(chunk_size, "chunk_size")
    n, d = x.shape
    xd = x.detach()
    mean = xd.double().mean(0) if center else None
    gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk_size):
        block = xd[start : start + chunk_size].double()
        if mean is not None:
            block = block - mean
        gram += block.T @ block
    if n >= d:
        eig = torch.linalg.eigvalsh(gram)
    else:  # fewer rows than dims: the n x n Gram has the same non-zero spectrum
        xc = xd.double() - mean if mean is not None else xd.double()
        eig = torch.linalg.eigvalsh(xc @ xc.T)
    eig = eig.flip(0).clamp_min(0.0)[: min(n, d)]
    values: Tensor = eig.sqrt().cpu()
    return values


def effective_rank(sv: Tensor) -> float:
    """RankMe / Roy-Vetterli effective rank ``exp(-sum_k p_k log p_k)``.

    ``p_k = sigma_k / sum_j sigma_j``.

    ``0 log 0 = 0``; RankMe's ``eps = 1e-7`` smoothing is not added.

    Args:
        sv: non-negative singular values.

    Returns:
        A float in ``[1, len(sv)]``.

    Raises:
        ValueError: all singular values are zero.

    Example:
        >>> effective_rank(torch.ones(4))
        4.0

    """
    s = sv.double()
    total = float(s.sum())
    if total <= 0:
        raise ValueError("sv: all singular values are zero, the effective rank is undefined")
    p = s / total
    entropy = -float(torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum())
    return math.exp(entropy)


def spectrum(
    x: Tensor,
    *,
    center: bool = False,
    collapse_ratio: float = 0.01,
    warn: bool = True,
    chunk_size: int = 8192,
    check_values: bool = True,
) -> SpectrumResult:
    """Singular-value spectrum, effective rank (RankMe [1]) and a dimensional-collapse flag.

    The flag is raised when the effective rank is below ``max(1.5, collapse_ratio * min(n, d))``;
    with ``warn=True`` a :class:`CollapseWarning` is emitted too. A fully collapsed embedding
    (every row the same vector) has effective rank 1.

    Args:
        x: embeddings ``(n, d)``.
        center: subtract the mean first (RankMe uses the raw embedding, the default).
        collapse_ratio: fraction of ``min(n, d)`` below which the embedding counts as collapsed.
        warn: emit a :class:`CollapseWarning` when collapsed.
        chunk_size: rows per block for the Gram matrix.
        check_values: check for NaN/inf (host sync).

    Returns:
        A :class:`SpectrumResult`.

    Raises:
        ValueError: bad input or an all-zero matrix.

    Example:
        >>> r = spectrum(torch.eye(8))
        >>> round(r.effective_rank, 6), r.collapsed
        (8.0, False)

    """
    check_positive(collapse_ratio, "collapse_ratio")
    sv = singular_values(x, center=center, chunk_size=chunk_size, check_values=check_values)
    rank = effective_rank(sv)
    max_rank = int(sv.numel())
    var = sv.pow(2)
    explained = var.cumsum(0) / var.sum()
    collapsed = rank < max(1.5, collapse_ratio * max_rank)
    if collapsed and warn:
        warnings.warn(
            f"effective rank {rank:.2f} of a possible {max_rank}: the embedding looks collapsed",
            CollapseWarning,
            stacklevel=2,
        )
    return SpectrumResult(sv, rank, max_rank, explained, collapsed)
