"""Regression tests of the defects fixed for the 0.1 release (issue 13), one section each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import contrastkit as ck

D64 = torch.float64


def _pair(n: int = 6, d: int = 5, seed: int = 0, dtype: torch.dtype = D64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


# --------------------------------------------------------------------------- 1. debiased NT-Xent
def _debiased_reference(a, b, tau, prior):
    """Dense float64 debiased NT-Xent (Chuang et al.): ℓ = -log(pos / (pos + N_g)).

    Every exponential is taken relative to the anchor's largest logit ``m`` (a common factor of
    pos and N_g), so the reference does not overflow at τ = 1e-3.
    """
    z = F.normalize(torch.cat([a, b]), dim=-1)
    n = a.shape[0]
    sim = z @ z.T / tau
    losses = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        m = sim[i, others].max().detach()
        neg = [sim[i, k] - m for k in others if k != p]
        r = torch.stack(neg).exp().sum()
        count = len(neg)
        pos = (sim[i, p] - m).exp()
        floor = count * math.exp(-1 / tau - float(m))
        ng = torch.clamp((r - prior * count * pos) / (1 - prior), min=floor)
        losses.append(-torch.log(pos / (pos + ng)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("tau", [0.01, 1e-3])
def test_debiased_nt_xent_gradients_stay_finite_when_views_align(tau):
    # Aligned views: exp(s_pos - log R) overflows; the discarded branch used to make the
    # gradient NaN through torch.where (0 · inf) while the loss stayed finite.
    a, _ = _pair(6, 5, seed=1)
    b = a + 1e-3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2), dtype=D64)
    x = a.clone().requires_grad_()
    loss = ck.nt_xent(x, b, temperature=tau, debias_prior=0.1)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    y = a.clone().requires_grad_()
    ref = _debiased_reference(y, b, tau, 0.1)
    (ref_grad,) = torch.autograd.grad(ref, y)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(grad, ref_grad)


def test_debiased_nt_xent_float32_matches_float64_at_small_temperature():
    # In float32 at τ = 0.01: aligned views and near-orthogonal negatives (d = 256) make
    # exp(s_pos - log R) overflow (> e^88), which used to turn every gradient into NaN.
    a, b = _pair(8, 256, seed=3, dtype=torch.float32)
    b = a + 1e-3 * b
    x32, x64 = a.clone().requires_grad_(), a.double().requires_grad_()
    (g32,) = torch.autograd.grad(ck.nt_xent(x32, b, temperature=0.01, debias_prior=0.2), x32)
    loss64 = ck.nt_xent(x64, b.double(), temperature=0.01, debias_prior=0.2)
    (g64,) = torch.autograd.grad(loss64, x64)
    assert torch.isfinite(g32).all()
    torch.testing.assert_close(g32.double(), g64, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- 2. no negative
NO_NEGATIVE = {
    "info_nce": lambda a, b, ids: ck.info_nce(a, b, positive_ids=ids),
    "info_nce(symmetric)": lambda a, b, ids: ck.info_nce(a, b, positive_ids=ids, symmetric=True),
    "clip_loss": lambda a, b, ids: ck.clip_loss(a, b, positive_ids=ids),
    "nt_xent": lambda a, b, ids: ck.nt_xent(a, b, positive_ids=ids),
    "nt_xent(hardness)": lambda a, b, ids: ck.nt_xent(a, b, positive_ids=ids, hardness=1.0),
    "nt_xent(debias_prior)": lambda a, b, ids: ck.nt_xent(a, b, positive_ids=ids, debias_prior=0.1),
    "dcl": lambda a, b, ids: ck.dcl(a, b, positive_ids=ids),
    "dclw": lambda a, b, ids: ck.dclw(a, b, positive_ids=ids),
}


@pytest.mark.parametrize("name", list(NO_NEGATIVE))
def test_an_anchor_without_negatives_is_an_error_naming_positive_ids(name):
    # Used to be a silent 0.0 (InfoNCE, CLIP, NT-Xent), -inf (DCL/DCLW) or NaN (hardness).
    a, b = _pair(5, 4)
    with pytest.raises(ValueError, match="^positive_ids: every row shares one id"):
        NO_NEGATIVE[name](a, b, torch.zeros(5, dtype=torch.long))
    two_groups = torch.tensor([0, 0, 1, 1, 1])
    assert torch.isfinite(NO_NEGATIVE[name](a, b, two_groups))


def test_extra_negatives_keep_an_anchor_whose_ids_all_match_valid():
    a, b = _pair(5, 4)
    loss = ck.info_nce(a, b, positive_ids=torch.zeros(5, dtype=torch.long), negatives=b[:2] + 1)
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y, lab: ck.supcon(torch.stack([x, y], 1)[:1], lab[:1]),  # B·V = 2
        lambda x, y, lab: ck.source_supcon(x[:1], lab[:1], y[:1], x[:1]),
        lambda x, y, lab: ck.coconut_loss(x[:1], y[:1], lab[:1], torch.ones(1, dtype=torch.bool)),
        lambda x, y, lab: ck.supremix(torch.stack([x, y], 1)[:1], lab[:1].double()),
    ],
    ids=["supcon", "source_supcon", "coconut_loss", "supremix"],
)
def test_a_batch_of_one_sample_is_an_error_not_a_zero(call):
    a, b = _pair(4, 3)
    with pytest.raises(ValueError, match="needs at least"):
        call(a, b, torch.tensor([0, 0, 1, 1]))


def test_supcon_all_labels_equal_keeps_supcontrast_value():
    # Documented peer difference: SupContrast's value (not pytorch-metric-learning's 0).
    views = torch.stack(_pair(4, 3), 1)  # (4, 2, 3)
    z = F.normalize(views, dim=-1).transpose(0, 1).reshape(8, 3)
    logits = z @ z.T / 0.07
    losses = []
    for i in range(8):
        others = [k for k in range(8) if k != i]
        lse = torch.logsumexp(logits[i, others], 0)
        losses.append(lse - logits[i, others].mean())
    torch.testing.assert_close(
        ck.supcon(views, torch.zeros(4, dtype=torch.long)), torch.stack(losses).mean()
    )


# --------------------------------------------------------------------------- 3. zero rows, norms
def test_all_zero_row_is_an_error_when_normalizing():
    a, b = _pair(5, 4)
    a[2] = 0.0
    with pytest.raises(ValueError, match="^a has an all-zero row"):
        ck.info_nce(a, b)
    assert torch.isfinite(ck.info_nce(a, b, normalize=False))  # no direction needed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_all_zero_row_has_a_bounded_gradient_with_checks_off(dtype):
    # Was ≈ 2e12 in fp32 (F.normalize's eps) and inf in fp16.
    a, b = _pair(5, 4, dtype=torch.float32)
    a[2] = 0.0
    x = a.to(dtype).requires_grad_()
    loss = ck.info_nce(x, b.to(dtype), check_values=False)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(grad).all() and float(grad.abs().max()) < 10


@pytest.mark.parametrize("scale", [1e-30, 1e-13, 1e19, 1e30])
def test_normalize_is_exact_for_tiny_and_huge_norms(scale):
    # Norms below F.normalize's 1e-12 eps came out shorter than 1, above ~1.8e19 ||x||² overflowed.
    a, b = _pair(6, 5, dtype=torch.float32)
    torch.testing.assert_close(ck.clip_loss(a * scale, b), ck.clip_loss(a, b))
    torch.testing.assert_close(
        ck.supcon(torch.stack([a, b], 1) * scale), ck.supcon(torch.stack([a, b], 1))
    )


# --------------------------------------------------------------------------- 4. assorted inputs
def test_empty_negatives_mean_no_extra_negatives():
    a, b = _pair(5, 4)
    plain = ck.info_nce(a, b)
    torch.testing.assert_close(ck.info_nce(a, b, negatives=torch.empty(0, 4, dtype=D64)), plain)
    torch.testing.assert_close(ck.info_nce(a, b, negatives=torch.empty(5, 0, 4, dtype=D64)), plain)


def test_empty_view_axis_is_a_clear_error():
    with pytest.raises(ValueError, match="^embeddings has no views"):
        ck.supcon(torch.randn(3, 0, 4), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="^views must have shape"):
        ck.mv_info_nce(torch.randn(3, 0, 4))


def test_mixed_float32_float64_is_a_clear_error():
    a, b = _pair(5, 4)
    with pytest.raises(ValueError, match="^b must have the dtype of a"):
        ck.info_nce(a, b.float())
    with pytest.raises(ValueError, match="^negatives must have the dtype of a"):
        ck.info_nce(a, b, negatives=b.float())
    # half precision is accumulated in float32: fp16 with fp32 is fine
    assert torch.isfinite(ck.info_nce(a.float(), b.half()))


def test_supcon_integer_temperature_with_base_temperature():
    # Was AttributeError: 'int' object has no attribute 'detach'.
    views = torch.stack(_pair(4, 3), 1)
    labels = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(
        ck.supcon(views, labels, temperature=1, base_temperature=0.07),
        ck.supcon(views, labels, temperature=1.0, base_temperature=0.07),
    )


def test_multi_hot_labels_must_be_zero_or_one():
    views = torch.stack(_pair(4, 3), 1)
    with pytest.raises(ValueError, match="^labels: a multi-label matrix must hold only 0 and 1"):
        ck.supcon(views, torch.tensor([[1, 0], [2, 0], [0, 1], [1, 1]]))
    assert torch.isfinite(ck.supcon(views, torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]])))


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b, t: ck.info_nce(a, b, temperature=t),
        lambda a, b, t: ck.clip_loss(a, b, temperature=t),
        lambda a, b, t: ck.siglip(a, b, temperature=t),
        lambda a, b, t: ck.supcon(torch.stack([a, b], 1), temperature=t),
        lambda a, b, t: ck.soft_clip_loss(a, b, temperature=t),
        lambda a, b, t: ck.mw_loss(a, b, temperature=t),
    ],
)
def test_batch_shaped_temperature_is_rejected(call):
    a, b = _pair(5, 4)
    with pytest.raises(ValueError, match="^temperature must be a number or a one-element"):
        call(a, b, torch.full((5,), 0.1, dtype=D64))
    # a one-element tensor is a temperature, with its gradient
    tau = torch.tensor(0.2, dtype=D64, requires_grad=True)
    (grad,) = torch.autograd.grad(call(a, b, tau), tau)
    assert torch.isfinite(grad) and grad != 0


def test_errors_name_the_functions_own_arguments():
    a, b = _pair(5, 4)
    with pytest.raises(ValueError, match="^a and b must have the same shape"):
        ck.clip_loss(a, b[:3])  # was: names of clip_loss(image, text)
    labels, mask = torch.tensor([0, 1, 0, 1, 2]), torch.ones(5, dtype=torch.bool)
    with pytest.raises(ValueError, match="^student and teacher must have the same shape"):
        ck.coconut_loss(a, b[:3], labels, mask)  # was: "anchors ... positives"
    with pytest.raises(ValueError, match="^rehearsal_mask must be a bool tensor"):
        ck.coconut_loss(a, b, labels, mask.long())
    with pytest.raises(ValueError, match="^student contains NaN"):
        ck.coconut_loss(a * math.nan, b, labels, mask)


@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_metrix_multi_similarity_lambda_at_its_bounds_is_finite(lam):
    # Was -inf with normalize=False: a weight-0 term with a huge logit set the log-sum-exp shift.
    emb = 10.0 * torch.randn(8, 6, dtype=D64, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    x = emb.clone().requires_grad_()
    loss = ck.metrix_multi_similarity(x, labels, lam=lam, normalize=False)
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    no_mix = ck.multi_similarity_loss(emb, labels, normalize=False)
    assert float(loss) >= float(no_mix) - 1e-12  # the mixed term is ≥ 0


def test_sogclr_non_finite_state_is_caught():
    a, b = _pair(6, 4)
    seen = torch.ones(6, dtype=torch.bool)
    log_u = torch.zeros(6, dtype=D64)
    log_u[2] = math.nan
    with pytest.raises(ValueError, match="^log_u contains NaN or inf values at seen rows"):
        ck.sogclr_loss(a, b, log_u, seen)
    seen[2] = False  # an unseen row is not read
    assert torch.isfinite(ck.sogclr_loss(a, b, log_u, seen).loss)


# --------------------------------------------------------------------------- 6. siglip, autocast
def test_siglip_under_bf16_autocast_is_as_accurate_as_float32():
    a, b = _pair(32, 16, seed=5, dtype=torch.float32)
    b = a + 0.3 * b
    ref = ck.siglip(a.double(), b.double(), temperature=0.01, bias=-5.0)
    x = a.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ck.siglip(x, b, temperature=0.01, bias=-5.0)
    (grad,) = torch.autograd.grad(loss, x)
    y = a.double().requires_grad_()
    (ref_grad,) = torch.autograd.grad(ck.siglip(y, b.double(), temperature=0.01, bias=-5.0), y)
    assert loss.dtype == torch.float32
    assert abs(float(loss) - float(ref)) < 1e-5 * max(1.0, abs(float(ref)))  # was 2e-4
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-6)  # was 7e-3


def test_every_loss_ignores_autocast():
    a, b = _pair(8, 6, seed=6, dtype=torch.float32)
    views = torch.stack([a, b], 1)
    calls = [
        lambda: ck.mv_info_nce(views, temperature=0.05),
        lambda: ck.symile_loss(a, b, temperature=0.05, generator=torch.Generator().manual_seed(0)),
        lambda: ck.multi_similarity_loss(a, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])),
        lambda: ck.cacr_loss(views),
    ]
    for call in calls:
        plain = call()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(call(), plain)


# --------------------------------------------------------------------------- overflow (fuzzing)
@pytest.mark.parametrize(
    "call",
    [
        # per-anchor losses finite, their mean overflowed to inf
        lambda x: ck.supcon(x, normalize=False, temperature=0.05),
        # a finite loss of ~1e29 whose gradient overflows
        lambda x: ck.cacr_loss(x, normalize=False, reduction="sum"),
        # inf Gram entries were hidden as zero volumes (NaN gradients)
        lambda x: ck.gram_loss(x[:, 0], x[:, 1], normalize=False),
    ],
    ids=["supcon", "cacr_loss", "gram_loss"],
)
def test_overflowing_similarities_are_an_error_not_a_silent_inf(call):
    views = 1e20 * torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(7))
    with pytest.raises(ValueError, match="the loss is not finite, or too large"):
        call(views.requires_grad_())
