from __future__ import annotations

import pytest
import torch

from contrastkit.data.variants import (
    class_split_indices,
    long_tailed_counts,
    long_tailed_indices,
    task_sequence,
)


def test_long_tailed_counts_follow_exponential_profile() -> None:
    counts = long_tailed_counts(6000, 10, 100.0)
    assert counts[0] == 6000 and counts[-1] == 60
    for c, n in enumerate(counts):  # n_c = n_max * rho^(-c/(C-1)), floored
        assert n == int(6000 * 100.0 ** (-c / 9))
    assert all(a > b for a, b in zip(counts, counts[1:], strict=False))
    assert long_tailed_counts(100, 5, 1.0) == [100] * 5


def test_long_tailed_indices_counts_and_seed() -> None:
    labels = torch.arange(10).repeat_interleave(200)[torch.randperm(2000)]
    idx = long_tailed_indices(labels, 10.0, seed=3)
    counts = torch.bincount(labels[idx], minlength=10).tolist()
    assert counts == long_tailed_counts(200, 10, 10.0)
    assert torch.equal(idx, long_tailed_indices(labels, 10.0, seed=3))
    assert not torch.equal(idx, long_tailed_indices(labels, 10.0, seed=4))
    assert len(set(idx.tolist())) == len(idx)


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_long_tail_rejects_bad_ratio(bad: float) -> None:
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tailed_counts(10, 10, bad)


def test_class_split_and_tasks() -> None:
    labels = torch.tensor([0, 1, 2, 3, 2, 1])
    assert class_split_indices(labels, [1, 2]).tolist() == [1, 2, 4, 5]
    with pytest.raises(ValueError, match="classes"):
        class_split_indices(labels, [])
    assert task_sequence(10, 5) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    tasks = task_sequence(10, 3, seed=0)
    assert [len(t) for t in tasks] == [4, 3, 3]
    assert sorted(sum(tasks, [])) == list(range(10))
    with pytest.raises(ValueError, match="num_tasks"):
        task_sequence(10, 11)
