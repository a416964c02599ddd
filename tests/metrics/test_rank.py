from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from contrastkit.metrics import CollapseWarning, effective_rank, singular_values, spectrum


@pytest.mark.parametrize("shape", [(50, 8), (6, 20)])
@pytest.mark.parametrize("center", [False, True])
def test_singular_values_match_numpy(gen: torch.Generator, shape, center: bool) -> None:  # type: ignore[no-untyped-def]
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    xn = x.numpy() - (x.numpy().mean(0) if center else 0)
    expected = np.linalg.svd(xn, compute_uv=False)
    got = singular_values(x, center=center, chunk_size=7).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-8)


def test_effective_rank_formula(gen: torch.Generator) -> None:
    s = torch.rand(10, generator=gen, dtype=torch.float64)
    p = s / s.sum()
    expected = math.exp(-sum(float(v) * math.log(float(v)) for v in p))
    assert effective_rank(s) == pytest.approx(expected, rel=1e-12)
    assert effective_rank(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)


def test_spectrum_closed_forms() -> None:
    # orthonormal rows: all singular values equal -> full effective rank
    r = spectrum(torch.eye(16))
    assert r.effective_rank == pytest.approx(16.0)
    assert not r.collapsed
    assert float(r.explained_variance[-1]) == pytest.approx(1.0)
    # uniform points on a circle: two equal singular values (sqrt(n/2))
    n = 40
    ang = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n
    circle = torch.stack([ang.cos(), ang.sin()], 1)
    r = spectrum(circle)
    assert r.singular_values.tolist() == pytest.approx([math.sqrt(n / 2)] * 2)
    assert r.effective_rank == pytest.approx(2.0)


def test_collapse_warning() -> None:
    collapsed = torch.ones(100, 32) + 1e-9 * torch.randn(100, 32)
    with pytest.warns(CollapseWarning, match="collapsed"):
        r = spectrum(collapsed)
    assert r.collapsed and r.effective_rank < 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = spectrum(collapsed, warn=False)
    assert r.collapsed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not spectrum(torch.randn(100, 32)).collapsed


def test_errors() -> None:
    with pytest.raises(ValueError, match="all singular values are zero"):
        spectrum(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        singular_values(torch.tensor([[1.0, float("inf")]]))
