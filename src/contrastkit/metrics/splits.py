"""Seeded, stratified train/test splits for probes."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.metrics._common import check_class_labels


def train_test_indices(
    labels: Tensor, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Stratified random split: within each class, ``round(test_fraction * n_c)`` rows go to test.

    Every class with at least two rows gets at least one train and one test row; a class with a
    single row goes to train. The split depends only on ``labels`` and ``seed``.

    Args:
        labels: integer class ids ``(n,)``.
        test_fraction: fraction of each class held out, in ``(0, 1)``.
        seed: seed of the permutation.

    Returns:
        ``(train_indices, test_indices)``, sorted int64 tensors.

    Raises:
        ValueError: bad labels, ``test_fraction`` outside ``(0, 1)``, or an empty test split.

    Example:
        >>> tr, te = train_test_indices(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]))
        >>> len(tr), len(te)
        (8, 2)

    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    lab = check_class_labels(labels, int(labels.shape[0]) if labels.ndim else -1, "labels")
    gen = torch.Generator().manual_seed(seed)
    train: list[Tensor] = []
    test: list[Tensor] = []
    for cls in torch.unique(lab):
        idx = torch.nonzero(lab == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        else:
            n_test = 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    test_idx = torch.cat(test).sort().values
    if test_idx.numel() == 0:
        raise ValueError("labels: too few rows per class to hold out a test split")
    return torch.cat(train).sort().values, test_idx
