"""The trainer's one door to evaluation: kNN accuracy, linear probe and zero-shot accuracy.

kNN and the linear probe are the diagnostics helpers' ``contrastkit.metrics.knn_accuracy`` and
``contrastkit.metrics.linear_probe`` when they are importable; otherwise a minimal local version
with the same signature and protocol is used (weighted cosine kNN, multinomial logistic regression).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class _LocalProbeResult:
    accuracy: float


def _local_knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> float:
    """Weighted kNN (Wu et al. 2018): cosine neighbours vote with weight ``exp(sim / T)``."""
    train = F.normalize(train_x.float(), dim=1)
    test = F.normalize(test_x.float(), dim=1)
    num_classes = int(max(int(train_y.max()), int(test_y.max())) + 1)
    k = min(k, train.shape[0])
    correct = 0
    for start in range(0, test.shape[0], chunk_size):
        sims = test[start : start + chunk_size] @ train.T  # (c, N)
        top, idx = sims.topk(k, dim=1)  # (c, k)
        votes = torch.zeros(top.shape[0], num_classes)
        votes.scatter_add_(1, train_y[idx], (top / temperature).exp())
        correct += int((votes.argmax(1) == test_y[start : start + chunk_size]).sum())
    return correct / test.shape[0]


def _local_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    max_iter: int = 1000,
    seed: int = 0,
) -> _LocalProbeResult:
    """Multinomial logistic regression on standardised features (scikit-learn, L-BFGS)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.double().numpy())
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(train_x.double().numpy()), train_y.numpy())
    pred = clf.predict(scaler.transform(test_x.double().numpy()))
    return _LocalProbeResult(float(np.mean(pred == test_y.numpy())))


def _metric(name: str, fallback: Callable[..., Any]) -> tuple[Callable[..., Any], str]:
    try:
        module = importlib.import_module("contrastkit.metrics")
    except ImportError:
        return fallback, "local"
    func = getattr(module, name, None)
    return (func, "contrastkit.metrics") if callable(func) else (fallback, "local")


def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Weighted-kNN top-1 accuracy of ``test_x`` against the labelled bank ``train_x``."""
    func, _ = _metric("knn_accuracy", _local_knn_accuracy)
    return float(func(train_x, train_y, test_x, test_y, k=k, temperature=temperature))


def linear_probe_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    max_iter: int = 1000,
    seed: int = 0,
) -> float:
    """Test accuracy of a linear classifier fitted on frozen ``train_x``."""
    func, _ = _metric("linear_probe", _local_linear_probe)
    return float(func(train_x, train_y, test_x, test_y, max_iter=max_iter, seed=seed).accuracy)


def zero_shot_accuracy(
    image_emb: Tensor, labels: Tensor, class_emb: Tensor, classes: list[int]
) -> float:
    """Accuracy of nearest-class-embedding prediction restricted to ``classes``.

    Only the samples whose label is in ``classes`` are scored, and only those classes compete.
    """
    wanted = torch.as_tensor(classes, dtype=labels.dtype)
    keep = torch.isin(labels, wanted)
    if not bool(keep.any()):
        raise ValueError(f"no sample has a label in classes={classes}")
    sims = (
        F.normalize(image_emb[keep].float(), dim=1)
        @ F.normalize(class_emb[wanted].float(), dim=1).T
    )
    pred = wanted[sims.argmax(1)]
    return float((pred == labels[keep]).float().mean())


def backends() -> dict[str, str]:
    """Which implementation each metric uses: ``contrastkit.metrics`` or ``local``."""
    return {
        "knn_accuracy": _metric("knn_accuracy", _local_knn_accuracy)[1],
        "linear_probe": _metric("linear_probe", _local_linear_probe)[1],
    }
