"""Continual-learning metrics: hand-computed values, edge cases and bad input."""

from __future__ import annotations

import pytest

from contrastkit.metrics.continual import (
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    check_accuracy_matrix,
    continual_summary,
    forgetting,
)

# After task 0: 0.9 on task 0; after task 1: 0.5 / 0.8; after task 2: 0.4 / 0.6 / 0.9.
R = [[0.9], [0.5, 0.8], [0.4, 0.6, 0.9]]


def test_hand_computed_values():
    assert average_accuracy(R) == pytest.approx((0.4 + 0.6 + 0.9) / 3)
    assert average_accuracy(R, after_task=1) == pytest.approx(0.65)
    assert average_incremental_accuracy(R) == pytest.approx((0.9 + 0.65 + 1.9 / 3) / 3)
    # forgetting: task 0 best 0.9 -> 0.4 (0.5); task 1 best 0.8 -> 0.6 (0.2)
    assert forgetting(R) == pytest.approx(0.35)
    # BWT: (0.4 - 0.9 + 0.6 - 0.8) / 2
    assert backward_transfer(R) == pytest.approx(-0.35)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    m = [[0.5], [0.9, 0.7], [0.6, 0.7, 0.8]]
    # task 0 peaked after task 1 (0.9): forgetting counts 0.3, BWT only 0.1 (0.6 - 0.5)
    assert forgetting(m) == pytest.approx((0.3 + 0.0) / 2)
    assert backward_transfer(m) == pytest.approx((0.1 + 0.0) / 2)


def test_no_forgetting_and_positive_transfer():
    m = [[0.5], [0.7, 0.6]]
    assert forgetting(m) == pytest.approx(-0.2)
    assert backward_transfer(m) == pytest.approx(0.2)


def test_summary_single_task_omits_two_task_metrics():
    s = continual_summary([[0.7]])
    assert s == {"final_average_accuracy": 0.7, "average_incremental_accuracy": 0.7}
    assert set(continual_summary(R)) == {
        "final_average_accuracy",
        "average_incremental_accuracy",
        "forgetting",
        "backward_transfer",
    }


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "non-empty"),
        ([[0.5, 0.2]], r"matrix\[0\] must hold 1"),
        ([[0.5], [0.2]], r"matrix\[1\] must hold 2"),
        ([[float("nan")]], "finite accuracy"),
        ([[1.5]], "finite accuracy"),
        ([["a"]], "must be a number"),
        ([[True]], "must be a number"),
    ],
)
def test_bad_matrices(bad, match):
    with pytest.raises(ValueError, match=match):
        check_accuracy_matrix(bad)


def test_one_task_has_no_forgetting_or_bwt():
    with pytest.raises(ValueError, match="at least 2 tasks"):
        forgetting([[0.5]])
    with pytest.raises(ValueError, match="at least 2 tasks"):
        backward_transfer([[0.5]])
    with pytest.raises(ValueError, match="after_task"):
        average_accuracy(R, after_task=3)
