"""MixCo and SoftCLIP: float64 loop references, M3CoL transcriptions, tiled == dense, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses._sampling import sample_beta
from contrastkit.losses.clip import clip_loss
from contrastkit.losses.info_nce import info_nce
from contrastkit.losses.mixco import MixCoLoss, mixco_loss, mixco_mix
from contrastkit.losses.soft_clip import SoftCLIPLoss, soft_clip_loss

D64 = torch.float64


def _inputs(n: int = 7, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    return a, b


def _spec(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    lam = torch.rand(n, generator=g, dtype=D64)
    lam[0] = 1.0  # one unmixed row
    return perm, lam


# ----------------------------------------------------------------------------- loop references
def ref_mixco(x_mixed, b, perm, lam, tau, symmetric):
    """Written from the formula: P_ij = λ_i[j=i] + (1-λ_i)[j=perm(i)], soft CE both ways."""
    z, y = F.normalize(x_mixed, dim=1), F.normalize(b, dim=1)
    n = z.shape[0]
    s = [[torch.dot(z[i], y[j]) / tau for j in range(n)] for i in range(n)]

    def p(i, j):
        return lam[i] * (1.0 if j == i else 0.0) + (1 - lam[i]) * (
            1.0 if j == int(perm[i]) else 0.0
        )

    rows = []
    for i in range(n):
        lse = torch.logsumexp(torch.stack(s[i]), 0)
        rows.append(-sum(p(i, j) * (s[i][j] - lse) for j in range(n)))
    total = torch.stack(rows).mean()
    if not symmetric:
        return total
    cols = []
    for j in range(n):
        lse = torch.logsumexp(torch.stack([s[i][j] for i in range(n)]), 0)
        cols.append(-sum(p(i, j) * (s[i][j] - lse) for i in range(n)))
    return 0.5 * (total + torch.stack(cols).mean())


def ref_soft_clip(a, b, tau, tau_t, symmetric):
    z, y = F.normalize(a, dim=1), F.normalize(b, dim=1)
    n = z.shape[0]
    s = [[torch.dot(z[i], y[j]) / tau for j in range(n)] for i in range(n)]
    k = [[torch.dot(y[i], y[j]) / tau_t for j in range(n)] for i in range(n)]
    t = []
    for i in range(n):
        lse = torch.logsumexp(torch.stack(k[i]), 0)
        t.append([torch.exp(k[i][j] - lse) for j in range(n)])
    rows = []
    for i in range(n):
        lse = torch.logsumexp(torch.stack(s[i]), 0)
        rows.append(-sum(t[i][j] * (s[i][j] - lse) for j in range(n)))
    total = torch.stack(rows).mean()
    if not symmetric:
        return total
    cols = []
    for j in range(n):
        lse = torch.logsumexp(torch.stack([s[i][j] for i in range(n)]), 0)
        cols.append(-sum(t[j][i] * (s[i][j] - lse) for i in range(n)))
    return 0.5 * (total + torch.stack(cols).mean())


# Transcriptions of M3CoL model/utils.py (the reference implementations), for parity.
def m3col_mixco_nce(mix, fix, temp, perm, betas, bidirectional=True):
    mix, fix = F.normalize(mix, dim=-1), F.normalize(fix, dim=-1)
    cos = mix @ fix.T / temp
    probs = torch.diag(betas)
    probs[torch.arange(mix.shape[0]), perm] = 1 - betas
    loss = -(cos.log_softmax(-1) * probs).sum(-1).mean()
    if bidirectional:
        loss = (loss - (cos.T.log_softmax(-1) * probs.T).sum(-1).mean()) / 2
    return loss


def m3col_soft_clip(preds, targs, temp=0.125):
    preds, targs = F.normalize(preds, dim=-1), F.normalize(targs, dim=-1)
    cc = targs @ targs.T / temp
    bc = preds @ targs.T / temp
    l1 = -(bc.log_softmax(-1) * cc.softmax(-1)).sum(-1).mean()
    l2 = -(bc.T.log_softmax(-1) * cc.softmax(-1)).sum(-1).mean()
    return (l1 + l2) / 2


def _grads(loss, *xs):
    return torch.autograd.grad(loss, xs)


# ----------------------------------------------------------------------------- MixCo
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("chunk", [None, 3, 1])
def test_mixco_matches_loop_reference(symmetric, chunk):
    a, b = _inputs()
    perm, lam = _spec(7)
    ours = mixco_loss(
        a, b, perm=perm, lambdas=lam, temperature=0.2, symmetric=symmetric, chunk_size=chunk
    )
    ref = ref_mixco(a, b, perm, lam, 0.2, symmetric)
    torch.testing.assert_close(ours, ref)
    for g1, g2 in zip(_grads(ours, a, b), _grads(ref, a, b), strict=True):
        torch.testing.assert_close(g1, g2)


def test_mixco_matches_m3col_transcription_and_mixing_path():
    a, b = _inputs(n=9, seed=3)
    gen = torch.Generator().manual_seed(5)
    ours = mixco_loss(a, b, generator=gen, temperature=0.1)
    batch = mixco_mix(a, generator=torch.Generator().manual_seed(5))
    if bool((batch.perm == torch.arange(9)).any() & (batch.lambdas < 1).any()):
        pytest.skip("a fixed point of perm would hit the documented reference difference")
    ref = m3col_mixco_nce(batch.mixed, b, 0.1, batch.perm, batch.lambdas.clone())
    torch.testing.assert_close(ours, ref)
    for g1, g2 in zip(_grads(ours, a, b), _grads(ref, a, b), strict=True):
        torch.testing.assert_close(g1, g2)


def test_mixco_tiled_equals_dense_float32():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(13, 6, generator=g, requires_grad=True)
    b = torch.randn(13, 6, generator=g, requires_grad=True)
    perm, lam = _spec(13, seed=2)
    lam = lam.float()
    dense = mixco_loss(a, b, perm=perm, lambdas=lam)
    tiled = mixco_loss(a, b, perm=perm, lambdas=lam, chunk_size=4)
    torch.testing.assert_close(dense, tiled)
    for g1, g2 in zip(_grads(dense, a, b), _grads(tiled, a, b), strict=True):
        torch.testing.assert_close(g1, g2)


def test_mixco_lambda_one_is_info_nce_and_clip():
    a, b = _inputs()
    ones = torch.ones(7, dtype=D64)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    one_way = mixco_loss(a, b, perm=perm, lambdas=ones, temperature=0.3, symmetric=False)
    torch.testing.assert_close(one_way, info_nce(a, b, temperature=0.3))
    both = mixco_loss(a, b, perm=perm, lambdas=ones, temperature=0.3)
    torch.testing.assert_close(both, clip_loss(a, b, temperature=0.3))


def test_mixco_fixed_point_target_is_one():
    a, b = _inputs(n=4)
    ident = torch.arange(4)
    lam = torch.tensor([0.3, 0.6, 1.0, 0.1], dtype=D64)
    # perm = identity: every mixed row is its own row, target = identity.
    ours = mixco_loss(a, b, perm=ident, lambdas=lam, symmetric=False)
    torch.testing.assert_close(ours, info_nce(a, b, temperature=0.1))


def test_mixco_negative_control_lambdas_change_gradient():
    a, b = _inputs()
    perm, lam = _spec(7)
    g1 = _grads(mixco_loss(a, b, perm=perm, lambdas=lam), a)[0]
    g2 = _grads(mixco_loss(a, b, perm=perm, lambdas=lam.flip(0)), a)[0]
    assert not torch.allclose(g1, g2)


def test_mixco_mix_reproducible_and_distribution():
    x = torch.randn(2000, 3)
    m1 = mixco_mix(x, generator=torch.Generator().manual_seed(1))
    m2 = mixco_mix(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m1.mixed, m2.mixed)
    assert torch.equal(m1.perm.sort().values, torch.arange(2000))
    unmixed = (m1.lambdas == 1).float().mean()
    assert abs(float(unmixed) - 0.5) < 0.05  # s_thresh = 0.5
    lam = m1.lambdas
    torch.testing.assert_close(m1.mixed, lam[:, None] * x + (1 - lam[:, None]) * x[m1.perm])


def test_sample_beta_moments():
    s = sample_beta(2.0, 8.0, (20000,), generator=torch.Generator().manual_seed(0), dtype=D64)
    assert abs(float(s.mean()) - 0.2) < 0.01
    var = 2 * 8 / (10**2 * 11)
    assert abs(float(s.var()) - var) < 0.003
    with pytest.raises(ValueError, match="concentration1"):
        sample_beta(0.0, 1.0, (2,))


def test_mixco_bad_inputs():
    a, b = _inputs()
    perm, lam = _spec(7)
    with pytest.raises(ValueError, match="perm and lambdas"):
        mixco_loss(a, b, perm=perm)
    with pytest.raises(ValueError, match="perm must be a permutation"):
        mixco_loss(a, b, perm=torch.zeros(7, dtype=torch.long), lambdas=lam)
    with pytest.raises(ValueError, match="lambdas must lie"):
        mixco_loss(a, b, perm=perm, lambdas=lam + 2)
    with pytest.raises(ValueError, match="temperature"):
        mixco_loss(a, b, perm=perm, lambdas=lam, temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        mixco_loss(a, b[:5])
    with pytest.raises(ValueError, match="NaN"):
        mixco_loss(a.detach() * math.nan, b)
    with pytest.raises(ValueError, match="s_thresh"):
        MixCoLoss(s_thresh=1.5)


def test_mixco_module_matches_function():
    a, b = _inputs()
    perm, lam = _spec(7)
    mod = MixCoLoss(temperature=0.2, reduction="none")
    torch.testing.assert_close(
        mod(a, b, perm, lam),
        mixco_loss(a, b, perm=perm, lambdas=lam, temperature=0.2, reduction="none"),
    )


# ----------------------------------------------------------------------------- SoftCLIP
@pytest.mark.parametrize("symmetric", [True, False])
def test_soft_clip_matches_loop_reference(symmetric):
    a, b = _inputs()
    ours = soft_clip_loss(a, b, temperature=0.3, target_temperature=0.2, symmetric=symmetric)
    ref = ref_soft_clip(a, b, 0.3, 0.2, symmetric)
    torch.testing.assert_close(ours, ref)
    for g1, g2 in zip(_grads(ours, a, b), _grads(ref, a, b), strict=True):
        torch.testing.assert_close(g1, g2)


def test_soft_clip_matches_m3col_transcription():
    a, b = _inputs(n=10, seed=4)
    ours = soft_clip_loss(a, b)
    ref = m3col_soft_clip(a, b)
    torch.testing.assert_close(ours, ref)
    for g1, g2 in zip(_grads(ours, a, b), _grads(ref, a, b), strict=True):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("chunk", [None, 3, 1])
@pytest.mark.parametrize("symmetric", [True, False])
def test_soft_clip_detached_engine_matches_reference_with_frozen_targets(chunk, symmetric):
    a, b = _inputs()
    ours = soft_clip_loss(
        a,
        b,
        detach_targets=True,
        chunk_size=chunk,
        symmetric=symmetric,
        temperature=0.25,
        target_temperature=0.4,
    )
    ref = ref_soft_clip(a, b.detach(), 0.25, 0.4, symmetric)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(_grads(ours, a)[0], _grads(ref, a)[0])
    # b still gets the gradient of the logits (not of the targets): compare with a reference
    # whose targets come from a detached copy of b.
    bt = b.detach()
    z, y = F.normalize(a, dim=1), F.normalize(b, dim=1)
    t = torch.softmax(F.normalize(bt, dim=1) @ F.normalize(bt, dim=1).T / 0.4, 1)
    s = z @ y.T / 0.25
    rows = (torch.logsumexp(s, 1) - (t * s).sum(1)).mean()
    ref_b = (
        rows if not symmetric else 0.5 * (rows + (torch.logsumexp(s, 0) - (t * s.T).sum(1)).mean())
    )
    ours = soft_clip_loss(
        a,
        b,
        detach_targets=True,
        chunk_size=chunk,
        symmetric=symmetric,
        temperature=0.25,
        target_temperature=0.4,
    )
    torch.testing.assert_close(_grads(ours, b)[0], _grads(ref_b, b)[0])


def test_soft_clip_sharp_targets_is_clip():
    a, b = _inputs()
    sharp = soft_clip_loss(a, b, temperature=0.2, target_temperature=1e-4)
    torch.testing.assert_close(sharp, clip_loss(a, b, temperature=0.2))


def test_soft_clip_negative_control_and_errors():
    a, b = _inputs()
    g1 = _grads(soft_clip_loss(a, b, target_temperature=0.1), a)[0]
    g2 = _grads(soft_clip_loss(a, b, target_temperature=1.0), a)[0]
    assert not torch.allclose(g1, g2)
    with pytest.raises(ValueError, match="target_temperature"):
        soft_clip_loss(a, b, target_temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        SoftCLIPLoss(temperature=0.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        soft_clip_loss(a[:1], b[:1])
    mod = SoftCLIPLoss(reduction="sum")
    torch.testing.assert_close(mod(a, b), soft_clip_loss(a, b, reduction="sum"))
