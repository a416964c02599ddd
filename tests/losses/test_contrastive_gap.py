"""Contrastive-gap terms (CUA / CUAXU) against a float64 loop transcription of the formulas."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from contrastkit.losses.contrastive_gap import (
    ContrastiveGapLoss,
    contrastive_gap_loss,
    cross_modal_uniformity_loss,
    cua_loss,
    cuaxu_loss,
)

D64 = torch.float64


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _value_and_grads(fn: Callable[..., Tensor], inputs: Sequence[Tensor]):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves)
    return out.detach(), [g.detach() for g in grads]


def _assert_same(fn_a, fn_b, inputs, rtol=1e-10, atol=1e-12) -> None:
    va, ga = _value_and_grads(fn_a, inputs)
    vb, gb = _value_and_grads(fn_b, inputs)
    torch.testing.assert_close(va, vb, rtol=rtol, atol=atol)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- loop references
def _unit(x: Tensor) -> list[Tensor]:
    return [x[i] / x[i].norm() for i in range(x.shape[0])]


def _logmeanexp(terms: list[Tensor]) -> Tensor:
    return torch.log(sum(torch.exp(t) for t in terms) / len(terms))


def ref_clip(img: list[Tensor], txt: list[Tensor], tau: float) -> Tensor:
    n = len(img)
    total = img[0].new_zeros(())
    for i in range(n):
        row = [img[i] @ txt[j] / tau for j in range(n)]
        col = [txt[i] @ img[j] / tau for j in range(n)]
        total = total + 0.5 * (
            torch.log(sum(torch.exp(r) for r in row))
            - row[i]
            + torch.log(sum(torch.exp(c) for c in col))
            - col[i]
        )
    return total / n


def ref_unif(x: list[Tensor], t: float) -> Tensor:
    n = len(x)
    return _logmeanexp([-t * (x[i] - x[j]).pow(2).sum() for i in range(n) for j in range(i + 1, n)])


def ref_xunif(img: list[Tensor], txt: list[Tensor], t: float) -> Tensor:
    n = len(img)
    return _logmeanexp(
        [-t * (img[j] - txt[k]).pow(2).sum() for j in range(n) for k in range(n) if j != k]
    )


def ref_align(img: list[Tensor], txt: list[Tensor], alpha: float) -> Tensor:
    return sum((i - t).norm().pow(alpha) for i, t in zip(img, txt, strict=True)) / len(img)


def ref_gap(image: Tensor, text: Tensor, tau: float, alpha: float, t: float, xu: bool) -> Tensor:
    img, txt = _unit(image), _unit(text)
    loss = (
        ref_clip(img, txt, tau)
        + 0.5 * (ref_unif(img, t) + ref_unif(txt, t))
        + ref_align(img, txt, alpha)
    )
    return loss + ref_xunif(img, txt, t) if xu else loss


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("chunk_size", [None, 3, 1])
@pytest.mark.parametrize("xu", [False, True])
def test_matches_loop_reference(chunk_size: int | None, xu: bool) -> None:
    image, text = _randn(7, 5, seed=0), _randn(7, 5, seed=1)
    fn = cuaxu_loss if xu else cua_loss

    def ours(i: Tensor, t: Tensor) -> Tensor:
        return fn(i, t, temperature=0.1, chunk_size=chunk_size)

    _assert_same(ours, lambda i, t: ref_gap(i, t, 0.1, 2.0, 2.0, xu), [image, text])


def test_hyper_parameters_reach_every_term() -> None:
    image, text = _randn(6, 4, seed=2), _randn(6, 4, seed=3)
    _assert_same(
        lambda i, t: contrastive_gap_loss(i, t, temperature=0.3, alpha=1.5, t=0.7),
        lambda i, t: ref_gap(i, t, 0.3, 1.5, 0.7, True),
        [image, text],
    )


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("chunk_size", [None, 2, 5])
def test_cross_modal_uniformity_matches_loop(normalize: bool, chunk_size: int | None) -> None:
    # Unnormalised inputs exercise the augmented inner-product identity for ‖a - b‖².
    a, b = 0.4 * _randn(9, 3, seed=4), 0.4 * _randn(9, 3, seed=5)

    def ref(a: Tensor, b: Tensor) -> Tensor:
        xa = _unit(a) if normalize else list(a.unbind(0))
        xb = _unit(b) if normalize else list(b.unbind(0))
        return ref_xunif(xa, xb, 1.3)

    _assert_same(
        lambda a, b: cross_modal_uniformity_loss(
            a, b, t=1.3, normalize=normalize, chunk_size=chunk_size
        ),
        ref,
        [a, b],
    )


def test_cross_modal_uniformity_closed_form_excludes_matched_pairs() -> None:
    # Identical orthonormal modalities: matched pairs at distance 0 (excluded), every unmatched
    # pair at squared distance 2, so xunif = -2t. Including the diagonal would give
    # log((n + n(n-1)e^{-2t}) / n²) instead.
    n, t = 4, 2.0
    eye = torch.eye(n, dtype=D64)
    got = float(cross_modal_uniformity_loss(eye, eye.clone(), t=t))
    assert got == pytest.approx(-2 * t, rel=1e-12)
    with_diag = math.log((n + n * (n - 1) * math.exp(-2 * t)) / n**2)
    assert abs(got - with_diag) > 1.0


def test_cuaxu_is_cua_plus_cross_uniformity_and_negative_control() -> None:
    image, text = _randn(6, 4, seed=6), _randn(6, 4, seed=7)
    cua = cua_loss(image, text)
    cuaxu = cuaxu_loss(image, text)
    xu = cross_modal_uniformity_loss(image, text)
    torch.testing.assert_close(cuaxu, cua + xu, rtol=1e-12, atol=1e-12)
    assert abs(float(xu)) > 1e-3
    moved = text + 0.3 * _randn(6, 4, seed=8)
    assert abs(float(cuaxu_loss(image, moved)) - float(cuaxu)) > 1e-3


def test_module_matches_function() -> None:
    image, text = _randn(6, 4, seed=9), _randn(6, 4, seed=10)
    assert torch.equal(ContrastiveGapLoss()(image, text), cuaxu_loss(image, text))
    assert torch.equal(
        ContrastiveGapLoss(cross_uniformity=False)(image, text), cua_loss(image, text)
    )
    assert cua_loss(image.half(), text.half()).dtype == torch.float32


def test_bad_inputs() -> None:
    image, text = _randn(6, 4, seed=0), _randn(6, 4, seed=1)
    with pytest.raises(ValueError, match="a and b"):
        cua_loss(image, text[:4])
    with pytest.raises(ValueError, match="a needs at least 2 rows"):
        cua_loss(image[:1], text[:1])
    with pytest.raises(ValueError, match="temperature"):
        cua_loss(image, text, temperature=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        cuaxu_loss(image, text, alpha=0.0)
    with pytest.raises(ValueError, match="t must"):
        cross_modal_uniformity_loss(image, text, t=0.0)
    bad = text.clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="b contains NaN"):
        cuaxu_loss(image, bad)
    with pytest.raises(ValueError, match="b needs|a and b"):
        cross_modal_uniformity_loss(image, text[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveGapLoss(temperature=0.0)
