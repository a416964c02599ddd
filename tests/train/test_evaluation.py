from __future__ import annotations

import pytest
import torch

from contrastkit.train import evaluation


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    centers = torch.randn(4, 8, generator=torch.Generator().manual_seed(99)) * 2
    return centers[y] + torch.randn(n, 8, generator=g), y


def test_knn_reference_loop() -> None:
    # weighted kNN written with explicit loops (float64) as the reference
    x, y = _blobs(60, 2)
    xt, yt = _blobs(25, 3)
    k, t = 7, 0.1
    xn, xtn = (
        torch.nn.functional.normalize(x.double(), dim=1),
        torch.nn.functional.normalize(xt.double(), dim=1),
    )
    correct = 0
    for i in range(len(xt)):
        sims = [(float(xtn[i] @ xn[j]), int(y[j])) for j in range(len(x))]
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * 4
        for s, label in sims[:k]:
            votes[label] += torch.tensor(s / t).exp().item()
        correct += int(max(range(4), key=lambda c: votes[c]) == int(yt[i]))
    assert evaluation.knn_accuracy(x, y, xt, yt, k=k, temperature=t) == pytest.approx(
        correct / len(xt)
    )


def test_zero_shot_accuracy() -> None:
    cls = torch.eye(3)
    emb = torch.tensor([[1.0, 0.1, 0], [0, 1, 0.2], [1.0, 0, 0.9], [0, 0, 1]])
    labels = torch.tensor([0, 1, 2, 2])
    assert evaluation.zero_shot_accuracy(emb, labels, cls, [0, 1, 2]) == 0.5 + 0.25
    # restricted to classes {1, 2}: only samples 1..3 count, and class 0 cannot be predicted
    assert evaluation.zero_shot_accuracy(emb, labels, cls, [1, 2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="classes"):
        evaluation.zero_shot_accuracy(emb, labels, cls[:, :3], [5])


def test_zero_shot_table_seen_unseen_generalized() -> None:
    cls = torch.eye(3)
    # samples of class 0 and 1 are seen, class 2 unseen; sample 3 (class 2) looks like class 0
    emb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0.1, 1], [1, 0, 0.5]])
    labels = torch.tensor([0, 1, 2, 2])
    zs = evaluation.zero_shot_table(emb, labels, cls, [0, 1])
    assert zs["unseen_classes"] == [2]
    assert zs["seen_way"] == 1.0 and zs["unseen_way"] == 1.0  # one class only: trivially right
    assert zs["generalized_seen"] == 1.0 and zs["generalized_unseen"] == 0.5
    assert zs["generalized_h"] == pytest.approx(2 * 0.5 / 1.5)
    assert zs["all_way"] == 0.75
    # calibration-free: subtracting γ ∈ (0.45, 1) from the seen scores gets every sample right
    assert zs["generalized_ausuc"] == pytest.approx(1.0)
    assert "generalized_h" not in evaluation.zero_shot_table(emb, labels, cls, [])
