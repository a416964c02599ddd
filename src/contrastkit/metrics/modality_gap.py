"""Modality gap / contrastive gap between two paired embedding sets.

References:
    [1] A. Fahim, A. Murphy, A. Fyshe, "It's Not a Modality Gap: Characterizing and Addressing
        the Contrastive Gap", 2024. https://arxiv.org/abs/2405.18570
    [2] W. Liang et al., "Mind the Gap: Understanding the Modality Gap in Multi-modal
        Contrastive Representation Learning", NeurIPS 2022.

"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit._checks import check_pair, check_positive
from contrastkit.metrics._common import prepare
from contrastkit.metrics.align_uniform import cross_uniformity, uniformity


@dataclass(frozen=True)
class ModalityGap:
    """All gap measures of [1] for two paired modalities.

    Attributes:
        centroid_distance: ``||mean(a) - mean(b)||_2`` on normalised rows (range 0-2).
        linear_separability: test accuracy of a logistic regression telling ``a`` rows from
            ``b`` rows (80/20 split); 0.5 = overlapping, 1.0 = disjoint.
        uniformity_a: uniformity of ``a``.
        uniformity_b: uniformity of ``b``.
        in_modal_uniformity: ``(uniformity_a + uniformity_b) / 2`` (``L_Uniform`` of [1]).
        cross_modal_uniformity: ``L_XUniform`` of [1] (off-diagonal cross pairs).

    """

    centroid_distance: float
    linear_separability: float
    uniformity_a: float
    uniformity_b: float
    in_modal_uniformity: float
    cross_modal_uniformity: float


def centroid_distance(
    a: Tensor, b: Tensor, *, normalize: bool = True, check_values: bool = True
) -> float:
    """Euclidean distance between the two modality centroids, ``||mean_i a_i - mean_j b_j||_2``.

    ``a`` and ``b`` need the same dimension but not the same number of rows. On unit vectors the
    distance lies in ``[0, 2]``; [1] reports 0.66 for fine-tuned CLIP at d=128.

    Args:
        a: ``(n, d)``.
        b: ``(m, d)``.
        normalize: L2-normalise rows first (default True).
        check_values: check for NaN/inf (host sync).

    Returns:
        The distance as a float.

    Raises:
        ValueError: bad shapes/dtypes or non-finite values.

    Example:
        >>> centroid_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
        1.4142135623730951

    """
    x = prepare(a, "a", normalize=normalize, check_values=check_values)
    y = prepare(b, "b", normalize=normalize, check_values=check_values)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return float((x.double().mean(0) - y.double().mean(0)).norm())


def linear_separability(
    a: Tensor,
    b: Tensor,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    normalize: bool = True,
    check_values: bool = True,
) -> float:
    """Test accuracy of a linear classifier telling modality ``a`` from modality ``b`` ([1]).

    Implementation: scikit-learn ``LogisticRegression`` (lbfgs, L2, ``C=1``) on standardised
    features, trained on a stratified random ``1 - test_fraction`` split of the ``n + m`` rows,
    evaluated on the rest.

    Args:
        a: ``(n, d)``.
        b: ``(m, d)``.
        test_fraction: held-out fraction in ``(0, 1)``, default 0.2 (the 80/20 split of [1]).
        seed: split and solver seed.
        max_iter: solver iterations.
        normalize: L2-normalise rows first (default True).
        check_values: check for NaN/inf (host sync).

    Returns:
        Held-out accuracy in ``[0, 1]``.

    Raises:
        ValueError: bad inputs, or too few rows for a split.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(50, 4, generator=g) + 5
        >>> linear_separability(a, -a)
        1.0

    """
    from contrastkit.metrics.splits import train_test_indices

    x = prepare(a, "a", normalize=normalize, check_values=check_values, min_rows=2)
    y = prepare(b, "b", normalize=normalize, check_values=check_values, min_rows=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    feats = torch.cat([x, y]).double()
    target = torch.cat([torch.zeros(len(x)), torch.ones(len(y))]).long()
    train, test = train_test_indices(target, test_fraction=test_fraction, seed=seed)
    from contrastkit.metrics.linear_probe import linear_probe

    result = linear_probe(
        feats[train], target[train], feats[test], target[test], max_iter=max_iter, seed=seed
    )
    return result.accuracy


def modality_gap(
    a: Tensor,
    b: Tensor,
    *,
    t: float = 2.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    normalize: bool = True,
    chunk_size: int = 1024,
    check_values: bool = True,
) -> ModalityGap:
    """Every contrastive-gap measure of [1] for row-paired modalities ``a`` and ``b``.

    Args:
        a: ``(n, d)``; row ``i`` pairs with ``b[i]``.
        b: ``(n, d)``.
        t: uniformity kernel scale, default 2.
        test_fraction: held-out fraction for the separability probe.
        seed: split seed.
        normalize: L2-normalise rows first (default True).
        chunk_size: rows per block for the uniformities.
        check_values: check for NaN/inf (host sync).

    Returns:
        A :class:`ModalityGap`.

    Raises:
        ValueError: bad inputs.

    Example:
        >>> a = torch.randn(40, 8)
        >>> gap = modality_gap(a, a + 3.0)
        >>> gap.centroid_distance > 0.5
        True

    """
    check_positive(t, "t")
    check_pair(a, b)
    x = prepare(a, "a", normalize=normalize, check_values=check_values, min_rows=2)
    y = prepare(b, "b", normalize=normalize, check_values=check_values, min_rows=2)
    kw = {"normalize": False, "check_values": False}
    ua = uniformity(x, t=t, chunk_size=chunk_size, **kw)
    ub = uniformity(y, t=t, chunk_size=chunk_size, **kw)
    return ModalityGap(
        centroid_distance=centroid_distance(x, y, **kw),
        linear_separability=linear_separability(x, y, test_fraction=test_fraction, seed=seed, **kw),
        uniformity_a=ua,
        uniformity_b=ub,
        in_modal_uniformity=(ua + ub) / 2,
        cross_modal_uniformity=cross_uniformity(x, y, t=t, chunk_size=chunk_size, **kw),
    )
