from __future__ import annotations

import math

import pytest
import torch

from contrastkit.metrics import alignment, cross_uniformity, uniformity


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def ref_alignment(a: torch.Tensor, b: torch.Tensor, alpha: float) -> float:
    a, b = _unit(a.double()), _unit(b.double())
    total = 0.0
    for i in range(len(a)):
        total += (
            math.sqrt(sum((float(a[i, k]) - float(b[i, k])) ** 2 for k in range(a.shape[1])))
            ** alpha
        )
    return total / len(a)


def ref_uniformity(x: torch.Tensor, t: float) -> float:
    x = _unit(x.double())
    vals = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            vals.append(math.exp(-t * float(((x[i] - x[j]) ** 2).sum())))
    return math.log(sum(vals) / len(vals))


def ref_cross_uniformity(a: torch.Tensor, b: torch.Tensor, t: float) -> float:
    a, b = _unit(a.double()), _unit(b.double())
    vals = [
        math.exp(-t * float(((a[j] - b[k]) ** 2).sum()))
        for j in range(len(a))
        for k in range(len(b))
        if j != k
    ]
    return math.log(sum(vals) / len(vals))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_loop(gen: torch.Generator, alpha: float) -> None:
    a, b = torch.randn(9, 5, generator=gen), torch.randn(9, 5, generator=gen)
    assert alignment(a, b, alpha=alpha) == pytest.approx(ref_alignment(a, b, alpha), rel=1e-6)
    # negative control: a different pairing changes the value
    assert alignment(a, b.roll(1, 0), alpha=alpha) != pytest.approx(alignment(a, b, alpha=alpha))


def test_alignment_closed_forms(gen: torch.Generator) -> None:
    a = _unit(torch.randn(7, 4, generator=gen))
    assert alignment(a, a) == pytest.approx(0.0, abs=1e-12)
    assert alignment(a, -a) == pytest.approx(4.0)  # antipodal: ||2a||^2 = 4
    # unit vectors: alpha=2 alignment = 2 - 2 mean cos
    b = _unit(torch.randn(7, 4, generator=gen))
    assert alignment(a, b) == pytest.approx(2 - 2 * float((a * b).sum(1).mean()), rel=1e-5)


@pytest.mark.parametrize("t", [0.5, 2.0])
def test_uniformity_matches_loop_and_pdist(gen: torch.Generator, t: float) -> None:
    x = torch.randn(13, 6, generator=gen, dtype=torch.float64)
    expected = ref_uniformity(x, t)
    assert uniformity(x, t=t) == pytest.approx(expected, rel=1e-10)
    # Wang & Isola's one-liner on normalised input
    pd = torch.pdist(_unit(x)).pow(2).mul(-t).exp().mean().log()
    assert uniformity(x, t=t) == pytest.approx(float(pd), rel=1e-10)


def test_uniformity_circle_closed_form() -> None:
    # n equally spaced points on the unit circle: ||x_i - x_j||^2 = 2 - 2 cos(2 pi (j - i) / n)
    n = 12
    ang = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    x = torch.stack([ang.cos(), ang.sin()], 1)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    expected = math.log(
        sum(math.exp(-2 * (2 - 2 * math.cos(2 * math.pi * (j - i) / n))) for i, j in pairs)
        / len(pairs)
    )
    assert uniformity(x) == pytest.approx(expected, rel=1e-10)
    # by symmetry every point sees the same neighbours: the mean over offsets 1..n-1
    by_offset = sum(math.exp(-2 * (2 - 2 * math.cos(2 * math.pi * k / n))) for k in range(1, n))
    assert uniformity(x) == pytest.approx(math.log(by_offset / (n - 1)), rel=1e-10)


def test_uniformity_collapsed_is_zero() -> None:
    x = torch.ones(10, 3)
    assert uniformity(x) == pytest.approx(0.0, abs=1e-6)
    assert alignment(x, x) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_chunked_equals_unchunked(gen: torch.Generator) -> None:
    x = torch.randn(37, 8, generator=gen)
    full = uniformity(x, chunk_size=1000)
    for cs in (1, 5, 36):
        assert uniformity(x, chunk_size=cs) == pytest.approx(full, rel=1e-9)


def test_cross_uniformity(gen: torch.Generator) -> None:
    a, b = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    expected = ref_cross_uniformity(a, b, 2.0)
    assert cross_uniformity(a, b) == pytest.approx(expected, rel=1e-6)
    assert cross_uniformity(a, b, chunk_size=3) == pytest.approx(expected, rel=1e-6)


def test_normalize_false_uses_raw_vectors(gen: torch.Generator) -> None:
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64) * 3
    pd = torch.pdist(x).pow(2).mul(-2).exp().mean().log()
    assert uniformity(x, normalize=False) == pytest.approx(float(pd), rel=1e-10)


def test_errors() -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        alignment(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="alpha"):
        alignment(x, x, alpha=0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        uniformity(torch.randn(1, 3))
    with pytest.raises(ValueError, match="t must"):
        uniformity(x, t=-1.0)
    bad = x.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        uniformity(bad)
    with pytest.raises(ValueError, match="all-zero row"):
        uniformity(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="floating"):
        uniformity(torch.ones(3, 2, dtype=torch.long))
