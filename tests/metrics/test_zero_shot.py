"""Generalized zero-shot calibration (calibrated stacking) and AUSUC against brute force."""

from __future__ import annotations

import pytest
import torch

from contrastkit.metrics.zero_shot import (
    ausuc,
    best_calibration,
    calibrated_accuracies,
    seen_unseen_curve,
)

SEEN = [0, 1, 3]


def brute(scores: torch.Tensor, labels: torch.Tensor, gamma: float) -> tuple[float, float]:
    shifted = scores.clone()
    shifted[:, SEEN] -= gamma
    pred = shifted.argmax(1)
    is_seen = torch.isin(labels, torch.tensor(SEEN))
    ok = pred == labels
    return float(ok[is_seen].float().mean()), float(ok[~is_seen].float().mean())


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat(40)
    scores = torch.randn(200, 5, generator=g) + 1.5 * torch.nn.functional.one_hot(labels, 5)
    scores[:, SEEN] += 1.0  # seen classes favoured, as after training on them
    return scores, labels


def test_calibrated_accuracies_match_brute_force(data) -> None:
    scores, labels = data
    for gamma in (-2.0, 0.0, 0.37, 1.0, 3.0):
        out = calibrated_accuracies(scores, labels, SEEN, gamma)
        s, u = brute(scores, labels, gamma)
        assert out["seen"] == pytest.approx(s) and out["unseen"] == pytest.approx(u)
        assert out["h"] == pytest.approx(2 * s * u / (s + u) if s + u else 0.0)


def test_curve_endpoints_and_area(data) -> None:
    scores, labels = data
    u, s = seen_unseen_curve(scores, labels, SEEN)
    assert u[0] == 0 and s[-1] == 0
    is_seen = torch.isin(labels, torch.tensor(SEEN))
    within_seen = brute(scores, labels, -1e3)[0]
    within_unseen = brute(scores, labels, 1e3)[1]
    assert s[0] == pytest.approx(within_seen) and u[-1] == pytest.approx(within_unseen)
    assert bool((u[1:] >= u[:-1]).all()) and bool((s[1:] <= s[:-1]).all())
    area = ausuc(scores, labels, SEEN)
    assert 0 < area <= within_seen * within_unseen + 1e-12
    # perfectly separable gaps: every seen sample's gap above every unseen one's
    perfect = torch.nn.functional.one_hot(labels, 5).float()
    perfect[is_seen, :] += torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0])
    assert ausuc(perfect, labels, SEEN) == pytest.approx(1.0)


def test_best_calibration_maximises_h(data) -> None:
    scores, labels = data
    gamma = best_calibration(scores, labels, SEEN)
    best = calibrated_accuracies(scores, labels, SEEN, gamma)["h"]
    grid = torch.linspace(-4, 4, 801).tolist()
    assert best >= max(calibrated_accuracies(scores, labels, SEEN, g)["h"] for g in grid) - 1e-12
    assert best > calibrated_accuracies(scores, labels, SEEN, 0.0)["h"]


def test_bad_input() -> None:
    scores, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="seen must be"):
        calibrated_accuracies(scores, labels, [5])
    with pytest.raises(ValueError, match="no unseen class"):
        calibrated_accuracies(scores, labels, [0, 1, 2])
    with pytest.raises(ValueError, match="scores must be"):
        ausuc(scores, labels[:-1], [0])
    with pytest.raises(ValueError, match="both seen and unseen"):
        calibrated_accuracies(scores, torch.zeros(6, dtype=torch.long), [0])
    bad = scores.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ausuc(bad, labels, [0])
