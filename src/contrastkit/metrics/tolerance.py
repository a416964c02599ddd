"""Tolerance to semantically similar samples (Wang & Liu, CVPR 2021, Eq. 11).

References:
    [1] F. Wang, H. Liu, "Understanding the Behaviour of Contrastive Loss", CVPR 2021.
        https://arxiv.org/abs/2012.09740

"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.metrics._common import prepare
from contrastkit.metrics._pairs import _check_label_tensor


def tolerance(
    x: Tensor,
    labels: Tensor,
    *,
    normalize: bool = True,
    check_values: bool = True,
) -> float:
    r"""Tolerance: the mean similarity of same-class pairs.

    :math:`T = E[z_x^\top z_y \mid l(x)=l(y),\ x \ne y]`.

    Wang & Liu write it as :math:`E_{x,y}[(f(x)^\top f(y))\,1\{l(x)=l(y)\}]`; their reported values
    (e.g. 0.38 on ImageNet-100) are the mean over same-class pairs, which is what this returns.
    Pairs of a sample with itself are excluded; ordered and unordered pairs give the same mean.
    Higher means the embedding keeps same-class samples close. Integer labels use the closed form
    :math:`\sum_c (\lVert\sum_{i\in c} z_i\rVert^2 - \sum_{i\in c}\lVert z_i\rVert^2) /
    \sum_c n_c(n_c-1)` in ``O(n d)``; multi-hot labels (share at least one label) use the
    blocked pairwise path.

    Args:
        x: embeddings ``(n, d)``.
        labels: integer ids ``(n,)`` or a 0/1 matrix ``(n, L)``.
        normalize: L2-normalise rows first (default True, as in [1]).
        check_values: check for NaN/inf (host sync).

    Returns:
        The tolerance as a Python float.

    Raises:
        ValueError: bad shapes/dtypes, non-finite values, or no class with two samples.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> tolerance(x, torch.tensor([0, 0, 1, 1]))
        1.0

    """
    z = prepare(x, "x", normalize=normalize, check_values=check_values, min_rows=2)
    lab = _check_label_tensor(labels, z.shape[0], "labels")
    if lab.ndim == 2:
        from contrastkit.metrics.similarity_stats import similarity_stats

        try:
            stats = similarity_stats(
                z, None, query_labels=lab, normalize=False, check_values=False, bins=1
            )
        except ValueError as err:
            raise ValueError("labels: no pair of samples shares a label") from err
        return stats.positive_mean
    lab = lab.long()
    if int(lab.min()) < 0:
        raise ValueError(f"labels must be non-negative class ids, got min {int(lab.min())}")
    zd = z.double()
    num_classes = int(lab.max()) + 1
    sums = torch.zeros(num_classes, zd.shape[1], dtype=torch.float64).index_add_(0, lab, zd)
    sq_norms = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, lab, zd.pow(2).sum(1))
    counts = torch.bincount(lab, minlength=num_classes).double()
    num_pairs = float((counts * (counts - 1)).sum())
    if num_pairs == 0:
        raise ValueError("labels: no class has two samples, tolerance is undefined")
    total = float((sums.pow(2).sum(1) - sq_norms).sum())
    return total / num_pairs
