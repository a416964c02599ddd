from __future__ import annotations

import math

import pytest
import torch

from contrastkit.metrics import (
    centroid_distance,
    hardness_curve,
    hardness_profile,
    linear_separability,
    modality_gap,
    temperature_sweep,
    uniformity,
)


def test_centroid_distance_known_shift(gen: torch.Generator) -> None:
    a = torch.randn(50, 6, generator=gen, dtype=torch.float64)
    shift = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    assert centroid_distance(a, a + shift, normalize=False) == pytest.approx(
        float(shift.norm()), rel=1e-12
    )
    # normalised: the distance of the mean unit vectors, computed by hand
    un = a / a.norm(dim=1, keepdim=True)
    b = a + shift
    ub = b / b.norm(dim=1, keepdim=True)
    assert centroid_distance(a, b) == pytest.approx(float((un.mean(0) - ub.mean(0)).norm()))
    assert centroid_distance(a, a) == 0.0


def test_linear_separability_extremes(gen: torch.Generator) -> None:
    a = torch.randn(200, 8, generator=gen)
    shift = torch.zeros(8)
    shift[0] = 6.0
    assert linear_separability(a, a + shift, normalize=False) == 1.0
    # same distribution: chance level
    b = torch.randn(200, 8, generator=gen)
    assert 0.3 <= linear_separability(a, b) <= 0.7


def test_modality_gap_fields(gen: torch.Generator) -> None:
    a = torch.randn(60, 5, generator=gen, dtype=torch.float64)
    b = a + torch.tensor([3.0, 0, 0, 0, 0], dtype=torch.float64)
    gap = modality_gap(a, b)
    assert gap.uniformity_a == pytest.approx(uniformity(a))
    assert gap.uniformity_b == pytest.approx(uniformity(b))
    assert gap.in_modal_uniformity == pytest.approx((gap.uniformity_a + gap.uniformity_b) / 2)
    assert gap.centroid_distance == pytest.approx(centroid_distance(a, b))
    assert gap.linear_separability > 0.9
    # two identical modalities: no gap
    same = modality_gap(a, a)
    assert same.centroid_distance == 0.0
    assert same.cross_modal_uniformity == pytest.approx(
        # all off-diagonal pairs of a single set = pdist twice
        uniformity(a),
        rel=1e-10,
    )


def ref_relative_weights(s: torch.Tensor, tau: float, neg: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(s, dtype=torch.float64)
    for i in range(s.shape[0]):
        denom = sum(math.exp(float(s[i, k]) / tau) for k in range(s.shape[1]) if neg[i, k])
        for j in range(s.shape[1]):
            if neg[i, j]:
                out[i, j] = math.exp(float(s[i, j]) / tau) / denom
    return out


@pytest.mark.parametrize("tau", [0.05, 0.3, 2.0])
def test_hardness_matches_loop_and_infonce_gradient(gen: torch.Generator, tau: float) -> None:
    s = torch.rand(7, 7, generator=gen, dtype=torch.float64) * 2 - 1
    neg = ~torch.eye(7, dtype=torch.bool)
    prof = hardness_profile(s, tau)
    torch.testing.assert_close(
        prof.weights, ref_relative_weights(s, tau, neg), rtol=1e-10, atol=1e-12
    )
    # Wang & Liu Eq. 5: the InfoNCE gradient on each negative, divided by the summed negative
    # gradients, is r_i(s_ij)
    sg = s.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(sg / tau, torch.arange(7), reduction="sum")
    loss.backward()
    g = sg.grad.masked_fill(~neg, 0.0)  # type: ignore[union-attr]
    torch.testing.assert_close(prof.weights, g / g.sum(1, keepdim=True), rtol=1e-9, atol=1e-12)
    # positive-gradient magnitude equals the sum of negative gradients
    torch.testing.assert_close(-sg.grad.diagonal(), g.sum(1))  # type: ignore[union-attr]


def test_hardness_closed_forms_and_sweep(gen: torch.Generator) -> None:
    s = torch.full((5, 5), 0.3)
    prof = hardness_profile(s, 0.1)
    assert prof.effective_negatives == pytest.approx(4.0)
    assert prof.top1_weight == pytest.approx(0.25)
    assert prof.entropy == pytest.approx(math.log(4))
    # entropy decreases strictly as tau decreases (Wang & Liu)
    s = torch.rand(10, 10, generator=gen) * 2 - 1
    sweep = temperature_sweep(s, [0.02, 0.1, 0.5, 2.0])
    ents = [p.entropy for p in sweep]
    assert ents == sorted(ents) and len(set(ents)) == 4
    assert sweep[0].top1_weight > sweep[-1].top1_weight
    x, y = hardness_curve(sweep[0], s, bins=10)
    assert len(x) == len(y) and bool((x[1:] > x[:-1]).all())
    assert float(y[-1]) > float(y[0])  # harder negatives weigh more


def test_hardness_custom_mask_and_errors() -> None:
    s = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]])
    neg = torch.tensor([[False, True, True], [True, False, True]])
    prof = hardness_profile(s, 0.5, negative_mask=neg)
    torch.testing.assert_close(prof.weights, ref_relative_weights(s, 0.5, neg))
    with pytest.raises(ValueError, match="negative_mask is required"):
        hardness_profile(s, 0.5)
    with pytest.raises(ValueError, match="anchor 1 has no negative"):
        hardness_profile(s, 0.5, negative_mask=torch.tensor([[False, True, True], [False] * 3]))
    with pytest.raises(ValueError, match="temperature"):
        hardness_profile(torch.eye(3), 0.0)
    with pytest.raises(ValueError, match="temperatures"):
        temperature_sweep(torch.eye(3), [])
