"""Properties of the core objectives (hypothesis) and their errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import contrastkit as ck

PAIR_LOSSES = {
    "info_nce": ck.info_nce,
    "info_nce_sym": lambda a, b, **k: ck.info_nce(a, b, symmetric=True, **k),
    "nt_xent": ck.nt_xent,
    "clip": ck.clip_loss,
    "siglip": ck.siglip,
    "dcl": ck.dcl,
    "dclw": ck.dclw,
    "cwcl": ck.cwcl,
}
SYMMETRIC = ("info_nce_sym", "nt_xent", "clip", "siglip", "dcl", "dclw")

settings.register_profile("ck", max_examples=15, deadline=None)
settings.load_profile("ck")


def _pair(seed: int, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=g), torch.randn(
        n, d, dtype=torch.float64, generator=g
    )


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
@given(seed=st.integers(0, 10_000), n=st.integers(2, 9), d=st.integers(1, 6))
def test_permutation_equivariance(name, seed, n, d):
    a, b = _pair(seed, n, d)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    fn = PAIR_LOSSES[name]
    torch.testing.assert_close(fn(a[perm], b[perm]), fn(a, b))


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0))
def test_scale_invariance_when_normalized(name, seed, scale):
    a, b = _pair(seed, 6, 4)
    fn = PAIR_LOSSES[name]
    torch.testing.assert_close(fn(a * scale, b / scale), fn(a, b))


@pytest.mark.parametrize("name", SYMMETRIC)
@given(seed=st.integers(0, 10_000))
def test_symmetric_losses_are_symmetric(name, seed):
    a, b = _pair(seed, 7, 5)
    fn = PAIR_LOSSES[name]
    torch.testing.assert_close(fn(a, b), fn(b, a))


def test_one_directional_info_nce_is_not_symmetric():
    a, b = _pair(0, 7, 5)
    assert not torch.allclose(ck.info_nce(a, b), ck.info_nce(b, a))


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
def test_negative_control_different_inputs_different_gradients(name):
    a, b = _pair(1, 6, 4)
    b2 = b.clone()
    b2[2] = -b2[2]
    grads = []
    for other in (b, b2):
        x = a.clone().requires_grad_()
        PAIR_LOSSES[name](x, other).backward()
        grads.append(x.grad)
    assert not torch.allclose(grads[0], grads[1])


def test_aligned_pairs_give_lower_loss_than_random():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(16, 8, generator=g)
    for name, fn in PAIR_LOSSES.items():
        if name == "cwcl":  # its targets are soft: with random frozen keys, ~uniform
            continue
        aligned = fn(a, a + 0.01 * torch.randn(16, 8, generator=g))
        shuffled = fn(a, torch.randn(16, 8, generator=g))
        assert aligned < shuffled, name


def test_collinear_nt_xent_closed_form():
    # All 2B views identical: every logit is 1/τ, ℓ = log(2B - 1) (lightly's closed form).
    x = torch.ones(4, 3)
    torch.testing.assert_close(ck.nt_xent(x, x, temperature=0.3), torch.tensor(math.log(7.0)))
    torch.testing.assert_close(ck.info_nce(x, x), torch.tensor(math.log(4.0)))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", list(PAIR_LOSSES))
def test_bad_inputs_raise_value_errors_naming_the_argument(name):
    fn = PAIR_LOSSES[name]
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        fn(a, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"a must have shape \(batch, dim\)"):
        fn(torch.randn(4), b)
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.ones(4, 3, dtype=torch.long), b)
    bad = b.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="b contains NaN or inf"):
        fn(a, bad)
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="b contains NaN or inf"):
        fn(a, bad)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fn(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="at least 2 rows"):
        fn(torch.randn(0, 3), torch.randn(0, 3))
    with pytest.raises(ValueError, match="reduction"):
        fn(a, b, reduction="avg")


@pytest.mark.parametrize("name", [n for n in PAIR_LOSSES if n != "clip"])
@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_temperature_raises(name, tau):
    with pytest.raises(ValueError, match="temperature"):
        PAIR_LOSSES[name](torch.randn(4, 3), torch.randn(4, 3), temperature=tau)


def test_check_values_off_skips_the_value_check():
    a = torch.randn(4, 3)
    a[0, 0] = float("nan")
    out = ck.info_nce(a, torch.randn(4, 3), check_values=False)
    assert torch.isnan(out)  # the caller opted out of the check


def test_supcon_bad_inputs():
    f = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="labels must have shape"):
        ck.supcon(f, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer class ids"):
        ck.supcon(f, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        ck.supcon(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="contrast_mode"):
        ck.supcon(f, torch.tensor([0, 1, 0, 1]), contrast_mode="some")
    with pytest.raises(ValueError, match="embeddings must have shape"):
        ck.supcon(torch.randn(4, 2, 3, 1), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="temperature"):
        ck.SupConLoss(temperature=0)


def test_info_nce_bad_negatives_and_ids():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="negatives must be a tensor of shape"):
        ck.info_nce(a, b, negatives=torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="negatives must have the embedding dimension of a"):
        ck.info_nce(a, b, negatives=torch.randn(5, 2))
    with pytest.raises(ValueError, match="positive_ids"):
        ck.info_nce(a, b, positive_ids=torch.arange(3))
    with pytest.raises(ValueError, match="positive_ids"):
        ck.nt_xent(a, b, positive_ids=torch.rand(4))
    # one anchor plus extra negatives is a valid batch
    assert torch.isfinite(ck.info_nce(a[:1], b[:1], negatives=torch.randn(3, 3)))


def test_module_constructors_validate():
    with pytest.raises(ValueError, match="temperature"):
        ck.InfoNCELoss(temperature=-1)
    with pytest.raises(ValueError, match="sigma"):
        ck.DCLWLoss(sigma=0)
    with pytest.raises(ValueError, match="reduction"):
        ck.NTXentLoss(reduction="max")
    with pytest.raises(ValueError, match="init must lie"):
        ck.LearnableTemperature(init=0.001, min=0.01)
    with pytest.raises(ValueError, match="chunk_size"):
        ck.info_nce(torch.randn(4, 3), torch.randn(4, 3), chunk_size=0)


def test_learnable_temperature_projects_like_clip():
    t = ck.LearnableTemperature(init=0.07)
    with torch.no_grad():
        t.log_inverse.fill_(10.0)  # 1/τ = e^10 > 100: past the bound, e.g. after an optimizer step
    torch.testing.assert_close(t(), torch.tensor(0.01))
    # projected back onto the bound, as open_clip's logit_scale.clamp_ after a step ...
    assert float(t.log_inverse.detach()) == pytest.approx(math.log(100.0))
    t().backward()
    # ... and the gradient there is the true one, dτ/d log(1/τ) = -τ (a clamp in the graph gave 0)
    torch.testing.assert_close(t.log_inverse.grad, torch.tensor(-0.01))


def test_learnable_temperature_comes_back_from_its_bound():
    # Regression: with the old clamp-in-forward the gradient was exactly 0 past the bound, so the
    # temperature never came back (and Adam's momentum kept pushing the parameter away).
    t = ck.LearnableTemperature(init=0.02, min=0.01)
    opt = torch.optim.Adam(t.parameters(), lr=0.5)
    for _ in range(20):  # a loss that wants a small τ drives the parameter past the bound
        opt.zero_grad()
        t().backward()
        opt.step()
    assert float(t().detach()) == pytest.approx(0.01)
    for _ in range(20):  # now the loss wants a large τ: the temperature must leave the bound
        opt.zero_grad()
        (-t()).backward()
        opt.step()
    assert float(t().detach()) > 0.05


def test_modules_equal_functions():
    a, b = _pair(3, 6, 4)
    torch.testing.assert_close(
        ck.InfoNCELoss(temperature=0.2)(a, b), ck.info_nce(a, b, temperature=0.2)
    )
    torch.testing.assert_close(
        ck.NTXentLoss(temperature=0.3)(a, b), ck.nt_xent(a, b, temperature=0.3)
    )
    torch.testing.assert_close(ck.DCLLoss(temperature=0.3)(a, b), ck.dcl(a, b, temperature=0.3))
    torch.testing.assert_close(
        ck.DCLWLoss(temperature=0.3, sigma=0.7)(a, b), ck.dclw(a, b, temperature=0.3, sigma=0.7)
    )
    torch.testing.assert_close(
        ck.CLIPLoss(temperature=0.2).double()(a, b), ck.clip_loss(a, b, temperature=0.2)
    )
    torch.testing.assert_close(
        ck.CWCLLoss(temperature=0.2).double()(a, b), ck.cwcl(a, b, temperature=0.2)
    )
