"""Alignment and uniformity of an embedding (Wang & Isola, ICML 2020), as evaluation metrics.

References:
    [1] T. Wang, P. Isola, "Understanding Contrastive Representation Learning through Alignment
        and Uniformity on the Hypersphere", ICML 2020. https://arxiv.org/abs/2005.10242

"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit._checks import check_pair, check_positive
from contrastkit.engine import log_mean_gaussian_potential
from contrastkit.metrics._common import check_int, prepare


def alignment(
    a: Tensor,
    b: Tensor,
    *,
    alpha: float = 2.0,
    normalize: bool = True,
    check_values: bool = True,
) -> float:
    r"""Alignment of positive pairs: :math:`\frac{1}{n}\sum_i \lVert a_i - b_i \rVert_2^\alpha`.

    Lower is better (0 when every pair coincides). On unit vectors with ``alpha=2`` it equals
    ``2 - 2 * mean_i cos(a_i, b_i)``. Matches ``align_loss`` of Wang & Isola's reference code
    (``alpha=2`` default); unlike that code, rows are L2-normalised here unless ``normalize=False``.

    Args:
        a: first views ``(n, d)``; row ``i`` pairs with ``b[i]``.
        b: second views ``(n, d)``.
        alpha: exponent on the distance (``> 0``), default 2 as in [1].
        normalize: L2-normalise rows first (default True).
        check_values: check for NaN/inf (host sync).

    Returns:
        The alignment as a Python float.

    Raises:
        ValueError: shapes differ, bad dtype, non-finite values, ``alpha <= 0``.

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> alignment(a, -a)
        4.0

    """
    check_positive(alpha, "alpha")
    check_pair(a, b)
    x = prepare(a, "a", normalize=normalize, check_values=check_values)
    y = prepare(b, "b", normalize=normalize, check_values=check_values).to(x.dtype)
    dist = (x.double() - y.double()).norm(dim=1)  # (n,)
    return float(dist.pow(alpha).mean())


def uniformity(
    x: Tensor,
    *,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int = 1024,
    check_values: bool = True,
) -> float:
    r"""Uniformity: :math:`\log \frac{2}{n(n-1)} \sum_{i<j} e^{-t \lVert x_i - x_j \rVert_2^2}`.

    Lower (more negative) is more uniform. The mean is over unordered pairs ``i < j`` without the
    diagonal, exactly like ``torch.pdist(x).pow(2).mul(-t).exp().mean().log()`` in Wang & Isola's
    code [1] (default ``t=2``). Wang & Liu (CVPR 2021) report ``-uniformity``. Computed exactly in
    row blocks of ``chunk_size`` with a float64 log-sum-exp, so memory is ``O(chunk_size * n)``.

    Args:
        x: embeddings ``(n, d)``, ``n >= 2``.
        t: kernel scale (``> 0``), default 2.
        normalize: L2-normalise rows first (default True; [1] expects normalised inputs).
        chunk_size: query rows per block.
        check_values: check for NaN/inf (host sync).

    Returns:
        The uniformity as a Python float.

    Raises:
        ValueError: fewer than 2 rows, bad dtype, non-finite values, ``t <= 0``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
        >>> uniformity(x)  # one pair at squared distance 4: log(exp(-8))
        -8.0

    """
    check_positive(t, "t")
    check_int(chunk_size, "chunk_size")
    z = prepare(x, "x", normalize=normalize, check_values=check_values, min_rows=2)
    with torch.no_grad():
        return float(log_mean_gaussian_potential(z.double(), t=t, chunk_size=chunk_size))


def cross_uniformity(
    a: Tensor,
    b: Tensor,
    *,
    t: float = 2.0,
    normalize: bool = True,
    chunk_size: int = 1024,
    check_values: bool = True,
) -> float:
    r"""Cross-modal uniformity over the off-diagonal pairs of two paired modalities.

    :math:`\log \frac{1}{n(n-1)} \sum_{j \ne k} e^{-t \lVert a_j - b_k \rVert^2}`.

    The ``L_XUniform`` term of Fahim, Murphy & Fyshe (2024, "It's Not a Modality Gap"): all
    off-diagonal pairs of the ``n x n`` cross-modal distance matrix (the matched pairs ``j = k``
    are excluded). Lower means the two modalities are spread over each other.

    Args:
        a: first modality ``(n, d)``.
        b: second modality ``(n, d)``, row-paired with ``a``.
        t: kernel scale (``> 0``), default 2.
        normalize: L2-normalise rows first (default True).
        chunk_size: rows per block.
        check_values: check for NaN/inf (host sync).

    Returns:
        The cross-modal uniformity as a Python float.

    Raises:
        ValueError: shapes differ, fewer than 2 rows, non-finite values, ``t <= 0``.

    Example:
        >>> a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> round(cross_uniformity(a, a), 4)  # off-diagonal squared distances are 2: -2t
        -4.0

    """
    check_positive(t, "t")
    check_int(chunk_size, "chunk_size")
    check_pair(a, b)
    x = prepare(a, "a", normalize=normalize, check_values=check_values, min_rows=2)
    y = prepare(b, "b", normalize=normalize, check_values=check_values, min_rows=2)
    with torch.no_grad():
        return float(
            log_mean_gaussian_potential(x.double(), y.double(), t=t, chunk_size=chunk_size)
        )
