from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from contrastkit.metrics import (
    LinearProbeResult,
    knn_accuracy,
    knn_predict,
    linear_probe,
    train_test_indices,
)


def _blobs(gen: torch.Generator, n: int, classes: int, d: int, spread: float):  # type: ignore[no-untyped-def]
    centres = torch.randn(classes, d, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = centres[y] + spread * torch.randn(n, d, generator=gen)
    return x.double(), y


def ref_knn(train_x, train_y, test_x, k, t):  # type: ignore[no-untyped-def]
    a = train_x / train_x.norm(dim=1, keepdim=True)
    b = test_x / test_x.norm(dim=1, keepdim=True)
    preds = []
    for i in range(len(b)):
        sims = [(float(b[i] @ a[j]), j) for j in range(len(a))]
        sims.sort(key=lambda s: -s[0])
        votes: dict[int, float] = {}
        for s, j in sims[:k]:
            votes[int(train_y[j])] = votes.get(int(train_y[j]), 0.0) + math.exp(s / t)
        preds.append(max(sorted(votes), key=lambda c: votes[c]))
    return torch.tensor(preds)


def test_knn_matches_loop_and_sklearn(gen: torch.Generator) -> None:
    xtr, ytr = _blobs(gen, 80, 4, 6, 1.5)
    xte, yte = _blobs(gen, 30, 4, 6, 1.5)
    for k, t in ((1, 0.1), (7, 0.07), (20, 0.5)):
        expected = ref_knn(xtr, ytr, xte, k, t)
        for cs in (1, 8, 1024):
            assert torch.equal(
                knn_predict(xtr, ytr, xte, k=k, temperature=t, chunk_size=cs), expected
            )
        # scikit-learn: cosine distance d = 1 - s, weights exp((1 - d) / T)
        clf = KNeighborsClassifier(
            n_neighbors=k,
            metric="cosine",
            algorithm="brute",
            weights=lambda d, t=t: np.exp((1 - d) / t),
        ).fit(xtr.numpy(), ytr.numpy())
        sk = clf.predict(xte.numpy())
        assert expected.tolist() == sk.tolist()
        acc = knn_accuracy(xtr, ytr, xte, yte, k=k, temperature=t, chunk_size=5)
        assert acc == pytest.approx(float((expected == yte).double().mean()))
    # negative control: shuffled training labels change the predictions
    assert not torch.equal(knn_predict(xtr, ytr.roll(1), xte, k=7), knn_predict(xtr, ytr, xte, k=7))


def test_knn_default_signature(gen: torch.Generator) -> None:
    xtr, ytr = _blobs(gen, 400, 5, 8, 0.3)
    xte, yte = _blobs(gen, 50, 5, 8, 0.3)
    acc = knn_accuracy(xtr.float(), ytr, xte.float(), yte)  # k=200, T=0.1
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0


def test_knn_errors(gen: torch.Generator) -> None:
    x, y = _blobs(gen, 10, 2, 3, 1.0)
    with pytest.raises(ValueError, match="k=11 exceeds"):
        knn_accuracy(x, y, x, y, k=11)
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(x, y, x, y, k=3, temperature=0.0)
    with pytest.raises(ValueError, match="train_y"):
        knn_accuracy(x, y[:5], x, y, k=3)
    with pytest.raises(ValueError, match="test_y"):
        knn_accuracy(x, y, x, y.double(), k=3)
    with pytest.raises(ValueError, match="same dimension"):
        knn_accuracy(x, y, x[:, :2], y, k=3)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        knn_accuracy(bad, y, x, y, k=3)


def test_linear_probe_matches_sklearn_pipeline(gen: torch.Generator) -> None:
    x, y = _blobs(gen, 300, 3, 10, 2.0)
    tr, te = train_test_indices(y, test_fraction=0.3, seed=1)
    res = linear_probe(x[tr], y[tr], x[te], y[te], max_iter=500, seed=0)
    assert isinstance(res, LinearProbeResult)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        x[tr].numpy(), y[tr].numpy()
    )
    assert res.accuracy == pytest.approx(float(pipe.score(x[te].numpy(), y[te].numpy())))
    assert res.train_accuracy == pytest.approx(float(pipe.score(x[tr].numpy(), y[tr].numpy())))
    assert res.num_classes == 3 and res.converged


def test_linear_probe_separable_and_chance(gen: torch.Generator) -> None:
    x = torch.randn(200, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    assert linear_probe(x[:150], y[:150], x[150:], y[150:]).accuracy >= 0.96
    noise = torch.randint(0, 2, (200,), generator=gen)
    assert linear_probe(x[:150], noise[:150], x[150:], noise[150:]).accuracy < 0.75


def test_linear_probe_errors(gen: torch.Generator) -> None:
    x = torch.randn(10, 3, generator=gen)
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(x, torch.zeros(10, dtype=torch.long), x, torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="same dimension"):
        linear_probe(x, torch.arange(10) % 2, x[:, :2], torch.arange(10) % 2)


def test_train_test_indices(gen: torch.Generator) -> None:
    y = torch.randint(0, 5, (103,), generator=gen)
    tr, te = train_test_indices(y, test_fraction=0.2, seed=3)
    assert sorted(torch.cat([tr, te]).tolist()) == list(range(103))
    for c in range(5):  # stratified
        n_c = int((y == c).sum())
        assert int((y[te] == c).sum()) == round(0.2 * n_c)
    tr2, te2 = train_test_indices(y, test_fraction=0.2, seed=3)
    assert torch.equal(te, te2)
    assert not torch.equal(te, train_test_indices(y, test_fraction=0.2, seed=4)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_indices(y, test_fraction=1.0)
