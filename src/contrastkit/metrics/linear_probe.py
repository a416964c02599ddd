"""Linear probe: multinomial logistic regression on frozen, standardised features."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from contrastkit._checks import check_embeddings
from contrastkit._optional import require
from contrastkit.metrics._common import check_class_labels, check_int


@dataclass(frozen=True)
class LinearProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        accuracy: test accuracy in ``[0, 1]``.
        train_accuracy: accuracy on the training rows.
        num_classes: number of classes seen in training.
        n_iter: solver iterations used.
        converged: False when lbfgs stopped at ``max_iter``.

    """

    accuracy: float
    train_accuracy: float
    num_classes: int
    n_iter: int
    converged: bool


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    max_iter: int = 1000,
    seed: int = 0,
) -> LinearProbeResult:
    """Linear-probe accuracy: a logistic regression trained on frozen features.

    Implementation: scikit-learn. Features are standardised with a ``StandardScaler`` fitted on
    the training rows only (its mean/std are applied to the test rows), then a multinomial
    ``LogisticRegression(C=1.0, solver="lbfgs", max_iter=max_iter, random_state=seed)`` is fit
    (L2 penalty, no hyper-parameter search). Features are used as given (not L2-normalised),
    in float64. Labels may be any non-negative integers; test labels unseen in training count as
    errors.

    Args:
        train_x: training features ``(n, d)``.
        train_y: training class ids ``(n,)``, at least two classes.
        test_x: test features ``(m, d)``.
        test_y: test class ids ``(m,)``.
        max_iter: lbfgs iterations.
        seed: ``random_state`` of the solver.

    Returns:
        A :class:`LinearProbeResult`.

    Raises:
        ValueError: bad shapes/dtypes, NaN/inf, dimension mismatch, or a single training class.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> linear_probe(x, y, x, y).accuracy
        1.0

    """
    require("sklearn", "train", "linear_probe")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    check_int(max_iter, "max_iter")
    check_embeddings(train_x, "train_x")
    check_embeddings(test_x, "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must have the same dimension, got {train_x.shape[1]} "
            f"and {test_x.shape[1]}"
        )
    ytr = check_class_labels(train_y, train_x.shape[0], "train_y").cpu().numpy()
    yte = check_class_labels(test_y, test_x.shape[0], "test_y").cpu().numpy()
    if len(np.unique(ytr)) < 2:
        raise ValueError("train_y must contain at least two classes for a linear probe")
    xtr = train_x.detach().double().cpu().numpy()
    xte = test_x.detach().double().cpu().numpy()
    scaler = StandardScaler().fit(xtr)
    xtr, xte = scaler.transform(xtr), scaler.transform(xte)
    clf = LogisticRegression(C=1.0, solver="lbfgs", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(xtr, ytr)
    n_iter = int(np.max(clf.n_iter_))
    return LinearProbeResult(
        accuracy=float((clf.predict(xte) == yte).mean()),
        train_accuracy=float((clf.predict(xtr) == ytr).mean()),
        num_classes=int(len(clf.classes_)),
        n_iter=n_iter,
        converged=n_iter < max_iter,
    )
