"""Dataset variants: long-tailed subsets and class splits (seen/unseen, task sequences)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def long_tailed_counts(num_per_class: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Per-class counts of an exponential long-tail profile (Cao et al. 2019, LDAM).

    Class ``c`` keeps ``n_max · ρ^(-c / (C - 1))`` samples, so the head class keeps
    ``num_per_class`` and the tail class ``num_per_class / imbalance_ratio`` (at least 1).

    Raises:
        ValueError: ``imbalance_ratio < 1`` or non-positive counts.
    """
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1, got {num_per_class}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not imbalance_ratio >= 1.0:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if num_classes == 1:
        return [num_per_class]
    return [
        max(1, int(num_per_class * imbalance_ratio ** (-c / (num_classes - 1))))
        for c in range(num_classes)
    ]


def long_tailed_indices(labels: Tensor, imbalance_ratio: float, seed: int = 0) -> Tensor:
    """Positions of a long-tailed subset of ``labels`` (class 0 is the head), sorted.

    The per-class budget follows :func:`long_tailed_counts` with the smallest class size as
    ``n_max``; which samples are kept is drawn with ``seed``.
    """
    classes = torch.unique(labels)
    per_class = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
    n_max = min(int(p.numel()) for p in per_class)
    counts = long_tailed_counts(n_max, len(per_class), imbalance_ratio)
    g = torch.Generator().manual_seed(seed)
    kept = [
        p[torch.randperm(p.numel(), generator=g)[:n]]
        for p, n in zip(per_class, counts, strict=True)
    ]
    return torch.sort(torch.cat(kept)).values


def class_split_indices(labels: Tensor, classes: Sequence[int]) -> Tensor:
    """Positions of the rows whose label is in ``classes`` (e.g. the seen classes)."""
    if len(classes) == 0:
        raise ValueError("classes must name at least one class")
    wanted = torch.as_tensor(list(classes), dtype=labels.dtype)
    return torch.nonzero(torch.isin(labels, wanted)).flatten()


def task_sequence(num_classes: int, num_tasks: int, seed: int | None = None) -> list[list[int]]:
    """Split ``range(num_classes)`` into ``num_tasks`` consecutive tasks (class-incremental).

    With ``seed`` the class order is shuffled first; tasks differ in size by at most one class.
    """
    if not 1 <= num_tasks <= num_classes:
        raise ValueError(f"num_tasks must be in [1, {num_classes}], got {num_tasks}")
    order = list(range(num_classes))
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        order = [order[i] for i in torch.randperm(num_classes, generator=g).tolist()]
    sizes = [
        num_classes // num_tasks + (1 if t < num_classes % num_tasks else 0)
        for t in range(num_tasks)
    ]
    tasks, start = [], 0
    for size in sizes:
        tasks.append(order[start : start + size])
        start += size
    return tasks
