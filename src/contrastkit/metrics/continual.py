"""Continual-learning metrics of an accuracy matrix (pure functions: lists in, floats out).

The accuracy matrix ``R`` of a run over ``T`` tasks is lower-triangular: ``R[t][j]`` is the
accuracy on the test samples of task ``j`` after training on task ``t`` (``j <= t``). It is
given as a list of ``T`` rows, row ``t`` holding ``t + 1`` values (entries above the diagonal are
undefined: the model has not seen those classes). In class-incremental learning the classifier
chooses among every class seen so far.

References:
    - [1] Chaudhry et al., "Riemannian Walk for Incremental Learning", ECCV 2018 (forgetting:
      ``f_j = max_{t < T-1} R[t][j] - R[T-1][j]``, averaged over ``j < T - 1``).
    - [2] Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017
      (backward transfer: ``BWT = mean_{j < T-1} R[T-1][j] - R[j][j]``).
    - [3] Rebuffi et al., "iCaRL", CVPR 2017 (average incremental accuracy: the mean over
      ``t`` of the average accuracy after task ``t``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AccuracyMatrix = Sequence[Sequence[float]]


def check_accuracy_matrix(matrix: AccuracyMatrix, name: str = "matrix") -> list[list[float]]:
    """Validate a lower-triangular accuracy matrix and return it as a list of float lists.

    Raises:
        ValueError: no rows, row ``t`` without exactly ``t + 1`` values, or a value that is not a
            finite number in ``[0, 1]``; the message names ``name``.
    """
    if isinstance(matrix, (str, bytes)) or not isinstance(matrix, Sequence) or not matrix:
        raise ValueError(f"{name} must be a non-empty list of rows, got {matrix!r}")
    out: list[list[float]] = []
    for t, row in enumerate(matrix):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != t + 1:
            raise ValueError(
                f"{name}[{t}] must hold {t + 1} accuracies (tasks 0..{t}), got {row!r}"
            )
        values = []
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name}[{t}][{j}] must be a number, got {v!r}")
            if not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}[{t}][{j}] must be a finite accuracy in [0, 1], got {v}")
            values.append(float(v))
        out.append(values)
    return out


def average_accuracy(matrix: AccuracyMatrix, after_task: int | None = None) -> float:
    """Mean accuracy over the tasks seen after task ``after_task`` (default: the last task).

    ``A_t = (1 / (t + 1)) Σ_{j <= t} R[t][j]``; with the default this is the *final average
    accuracy*.

    Raises:
        ValueError: a bad matrix, or ``after_task`` outside ``0..T-1``.
    """
    rows = check_accuracy_matrix(matrix)
    t = len(rows) - 1 if after_task is None else after_task
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(rows):
        raise ValueError(f"after_task must be an int in 0..{len(rows) - 1}, got {after_task!r}")
    return sum(rows[t]) / len(rows[t])


def average_incremental_accuracy(matrix: AccuracyMatrix) -> float:
    """Mean over ``t`` of :func:`average_accuracy` after task ``t`` (iCaRL's summary)."""
    rows = check_accuracy_matrix(matrix)
    return sum(sum(r) / len(r) for r in rows) / len(rows)


def forgetting(matrix: AccuracyMatrix) -> float:
    """Average forgetting: mean over old tasks of the best earlier accuracy minus the final one.

    ``F = (1 / (T-1)) Σ_{j < T-1} [max_{t < T-1, t >= j} R[t][j] - R[T-1][j]]`` (Chaudhry et
    al. 2018). Positive means forgotten; it can be negative (the final model is better).

    Raises:
        ValueError: a bad matrix or one task only (nothing can be forgotten).
    """
    rows = check_accuracy_matrix(matrix)
    last = len(rows) - 1
    if last < 1:
        raise ValueError("matrix: forgetting needs at least 2 tasks, got 1")
    drops = [max(rows[t][j] for t in range(j, last)) - rows[last][j] for j in range(last)]
    return sum(drops) / last


def backward_transfer(matrix: AccuracyMatrix) -> float:
    """Backward transfer: mean over old tasks of the final accuracy minus the just-learned one.

    ``BWT = (1 / (T-1)) Σ_{j < T-1} (R[T-1][j] - R[j][j])`` (Lopez-Paz & Ranzato 2017).
    Negative means forgetting.

    Raises:
        ValueError: a bad matrix or one task only.
    """
    rows = check_accuracy_matrix(matrix)
    last = len(rows) - 1
    if last < 1:
        raise ValueError("matrix: backward transfer needs at least 2 tasks, got 1")
    return sum(rows[last][j] - rows[j][j] for j in range(last)) / last


def continual_summary(matrix: AccuracyMatrix) -> dict[str, float]:
    """Every summary of ``matrix``: final and incremental average accuracy, forgetting, BWT.

    With one task the last two are omitted (they need two tasks).
    """
    rows = check_accuracy_matrix(matrix)
    out = {
        "final_average_accuracy": average_accuracy(rows),
        "average_incremental_accuracy": average_incremental_accuracy(rows),
    }
    if len(rows) > 1:
        out["forgetting"] = forgetting(rows)
        out["backward_transfer"] = backward_transfer(rows)
    return out
