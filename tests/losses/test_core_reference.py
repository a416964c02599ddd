"""Core objectives vs explicit float64 references written from their formulas (loops).

Each reference loops over anchors, positives and negatives exactly as the docstring formula
reads; values and gradients are compared on the dense and on the tiled engine path.
"""

from __future__ import annotations

import math

import pytest
import torch

import contrastkit as ck

D = torch.float64


def _unit(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True))


def _cos(x, y):
    return (x * y).sum() / torch.sqrt((x * x).sum() * (y * y).sum())


def _log_sum_exp(terms):
    return torch.log(sum(torch.exp(t) for t in terms))


# ----------------------------------------------------------------------------- references


def ref_info_nce(a, b, tau, symmetric=False, negatives=None, positive_ids=None):
    n = a.shape[0]
    ids = positive_ids if positive_ids is not None else torch.arange(n)
    losses_ab, losses_ba = [], []
    for i in range(n):
        terms = [_cos(a[i], b[j]) / tau for j in range(n) if j == i or ids[j] != ids[i]]
        if negatives is not None:
            negs = negatives if negatives.ndim == 2 else negatives[i]
            terms += [_cos(a[i], negs[k]) / tau for k in range(negs.shape[0])]
        losses_ab.append(_log_sum_exp(terms) - _cos(a[i], b[i]) / tau)
    if not symmetric:
        return torch.stack(losses_ab).mean()
    for j in range(n):
        terms = [_cos(a[i], b[j]) / tau for i in range(n) if i == j or ids[i] != ids[j]]
        losses_ba.append(_log_sum_exp(terms) - _cos(a[j], b[j]) / tau)
    return 0.5 * (torch.stack(losses_ab).mean() + torch.stack(losses_ba).mean())


def ref_nt_xent(a, b, tau, positive_ids=None):
    n = a.shape[0]
    z = torch.cat([a, b])
    ids = positive_ids if positive_ids is not None else torch.arange(n)
    losses = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        terms = [
            _cos(z[i], z[k]) / tau
            for k in range(2 * n)
            if k != i and (k == p or ids[k % n] != ids[i % n])
        ]
        losses.append(_log_sum_exp(terms) - _cos(z[i], z[p]) / tau)
    return torch.stack(losses).mean()


def ref_siglip(a, b, tau, bias):
    n = a.shape[0]
    total = 0
    for i in range(n):
        for j in range(n):
            y = 1.0 if i == j else -1.0
            x = _cos(a[i], b[j]) / tau + bias
            total = total - torch.log(torch.sigmoid(y * x))
    return total / n


def ref_dcl(a, b, tau, sigma=None):
    n = a.shape[0]
    ua, ub = _unit(a), _unit(b)
    if sigma is None:
        w = [1.0] * n
    else:  # detached von Mises-Fisher weights, batch softmax
        sims = [float(_cos(a[i].detach(), b[i].detach())) / sigma for i in range(n)]
        z = sum(math.exp(s) for s in sims)
        w = [2.0 - n * math.exp(s) / z for s in sims]
    losses = []
    for x, y in ((ua, ub), (ub, ua)):
        for i in range(n):
            terms = []
            for j in range(n):
                if j != i:
                    terms += [(x[i] @ x[j]) / tau, (x[i] @ y[j]) / tau]
            losses.append(-w[i] * (x[i] @ y[i]) / tau + _log_sum_exp(terms))
    return torch.stack(losses).mean()


def ref_supcon(feats, labels, tau, base_tau=None, mode="all"):
    bsz, views, _ = feats.shape
    z = [_unit(feats[i, v]) for v in range(views) for i in range(bsz)]  # views-major
    lab = [labels[i] for v in range(views) for i in range(bsz)]
    anchors = range(len(z)) if mode == "all" else range(bsz)
    losses = []
    for i in anchors:
        pos = [p for p in range(len(z)) if p != i and lab[p] == lab[i]]
        if not pos:
            continue
        denom = _log_sum_exp([(z[i] @ z[k]) / tau for k in range(len(z)) if k != i])
        mean_log_prob = sum((z[i] @ z[p]) / tau - denom for p in pos) / len(pos)
        factor = 1.0 if base_tau is None else tau / base_tau
        losses.append(-factor * mean_log_prob)
    return torch.stack(losses).mean()


def ref_cwcl(a, b, keys, tau, symmetric=True, weight_tau=None):
    n = a.shape[0]

    def weight(c):
        return (c + 1) / 2 if weight_tau is None else math.exp((c - 1) / weight_tau)

    w = [[weight(float(_cos(keys[i], keys[j]))) for j in range(n)] for i in range(n)]

    def direction(x, y):
        out = []
        for i in range(n):
            denom = _log_sum_exp([_cos(x[i], y[k]) / tau for k in range(n)])
            soft = sum(w[i][j] * (_cos(x[i], y[j]) / tau - denom) for j in range(n))
            out.append(-soft / sum(w[i]))
        return torch.stack(out).mean()

    ab = direction(a, b)
    return 0.5 * (ab + direction(b, a)) if symmetric else ab


# ----------------------------------------------------------------------------- harness


def _check(fn, ref, inputs, chunks=(None, 3)):
    """Values and gradients of fn (dense and tiled) equal the reference's."""
    ref_in = [x.clone().requires_grad_() for x in inputs]
    expected = ref(*ref_in)
    expected.backward()
    for chunk in chunks:
        got_in = [x.clone().requires_grad_() for x in inputs]
        value = fn(*got_in, chunk_size=chunk)
        torch.testing.assert_close(value, expected, msg=f"value, chunk_size={chunk}")
        value.backward()
        for k, (g, r) in enumerate(zip(got_in, ref_in, strict=True)):
            torch.testing.assert_close(g.grad, r.grad, msg=f"grad of input {k}, chunk={chunk}")


def _randn(*shape, seed):
    return torch.randn(*shape, dtype=D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_matches_reference(symmetric):
    a, b = _randn(7, 5, seed=0), _randn(7, 5, seed=1)
    _check(
        lambda a, b, chunk_size: ck.info_nce(
            a, b, temperature=0.3, symmetric=symmetric, chunk_size=chunk_size
        ),
        lambda a, b: ref_info_nce(a, b, 0.3, symmetric),
        [a, b],
    )


@pytest.mark.parametrize("shared", [True, False])
def test_info_nce_extra_negatives_match_reference(shared):
    a, b = _randn(6, 4, seed=2), _randn(6, 4, seed=3)
    negs = _randn(5, 4, seed=4) if shared else _randn(6, 3, 4, seed=4)
    _check(
        lambda a, b, n, chunk_size: ck.info_nce(
            a, b, temperature=0.2, negatives=n, chunk_size=chunk_size
        ),
        lambda a, b, n: ref_info_nce(a, b, 0.2, negatives=n),
        [a, b, negs],
    )


@pytest.mark.parametrize("symmetric", [False, True])
def test_info_nce_positive_ids_mask_duplicates(symmetric):
    a, b = _randn(8, 4, seed=5), _randn(8, 4, seed=6)
    ids = torch.tensor([0, 1, 0, 2, 1, 3, 4, 0])
    _check(
        lambda a, b, chunk_size: ck.info_nce(
            a, b, temperature=0.5, symmetric=symmetric, positive_ids=ids, chunk_size=chunk_size
        ),
        lambda a, b: ref_info_nce(a, b, 0.5, symmetric, positive_ids=ids),
        [a, b],
    )


def test_info_nce_duplicates_change_the_loss():
    a, b = _randn(8, 4, seed=7), _randn(8, 4, seed=8)
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert not torch.allclose(ck.info_nce(a, b), ck.info_nce(a, b, positive_ids=ids))
    # unique ids are the same as no ids
    torch.testing.assert_close(ck.info_nce(a, b), ck.info_nce(a, b, positive_ids=torch.arange(8)))


@pytest.mark.parametrize("with_ids", [False, True])
def test_nt_xent_matches_reference(with_ids):
    a, b = _randn(6, 5, seed=9), _randn(6, 5, seed=10)
    ids = torch.tensor([0, 1, 1, 2, 3, 0]) if with_ids else None
    _check(
        lambda a, b, chunk_size: ck.nt_xent(
            a, b, temperature=0.5, positive_ids=ids, chunk_size=chunk_size
        ),
        lambda a, b: ref_nt_xent(a, b, 0.5, positive_ids=ids),
        [a, b],
    )


def test_clip_loss_is_symmetric_info_nce_and_learns_temperature():
    a, b = _randn(6, 5, seed=11), _randn(6, 5, seed=12)
    _check(
        lambda a, b, chunk_size: ck.clip_loss(a, b, temperature=0.07, chunk_size=chunk_size),
        lambda a, b: ref_info_nce(a, b, 0.07, symmetric=True),
        [a, b],
    )
    module = ck.CLIPLoss(temperature=0.07).double()
    module(a, b).backward()
    grad = module.temperature.log_inverse.grad
    # d loss / d log(1/τ) by finite differences of the reference
    eps = 1e-6
    f = lambda t: ref_info_nce(a, b, math.exp(-t), symmetric=True)  # noqa: E731
    t0 = math.log(1 / 0.07)
    fd = (f(t0 + eps) - f(t0 - eps)) / (2 * eps)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-7)


def test_siglip_matches_reference():
    a, b = _randn(7, 4, seed=13), _randn(7, 4, seed=14)
    _check(
        lambda a, b, chunk_size: ck.siglip(a, b, temperature=0.5, bias=-2.0, chunk_size=chunk_size),
        lambda a, b: ref_siglip(a, b, 0.5, -2.0),
        [a, b],
    )


def test_siglip_module_learns_temperature_and_bias():
    a, b = _randn(5, 4, seed=15), _randn(5, 4, seed=16)
    module = ck.SigLIPLoss().double()
    module(a, b).backward()
    assert module.bias.grad is not None and module.bias.grad != 0
    assert module.temperature.log_inverse.grad is not None


@pytest.mark.parametrize("weighted", [False, True])
def test_dcl_and_dclw_match_reference(weighted):
    a, b = _randn(6, 4, seed=17), _randn(6, 4, seed=18)
    if weighted:
        fn = lambda a, b, chunk_size: ck.dclw(  # noqa: E731
            a, b, temperature=0.2, sigma=0.5, chunk_size=chunk_size
        )
        ref = lambda a, b: ref_dcl(a, b, 0.2, sigma=0.5)  # noqa: E731
    else:
        fn = lambda a, b, chunk_size: ck.dcl(a, b, temperature=0.2, chunk_size=chunk_size)  # noqa: E731
        ref = lambda a, b: ref_dcl(a, b, 0.2)  # noqa: E731
    _check(fn, ref, [a, b])


@pytest.mark.parametrize("mode", ["all", "one"])
@pytest.mark.parametrize("base", [None, 0.07])
def test_supcon_matches_reference(mode, base):
    feats = _randn(6, 3, 4, seed=19)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    _check(
        lambda f, chunk_size: ck.supcon(
            f,
            labels,
            temperature=0.1,
            base_temperature=base,
            contrast_mode=mode,
            chunk_size=chunk_size,
        ),
        lambda f: ref_supcon(f, labels, 0.1, base, mode),
        [feats],
    )


def test_supcon_excludes_and_counts_anchors_without_positive():
    feats = _randn(5, 1, 4, seed=20)
    labels = torch.tensor([0, 1, 0, 2, 3])  # only samples 0 and 2 have a positive
    _check(
        lambda f, chunk_size: ck.supcon(f, labels, temperature=0.1, chunk_size=chunk_size),
        lambda f: ref_supcon(f, labels, 0.1),
        [feats],
    )
    module = ck.SupConLoss(temperature=0.1)
    module(feats, labels)
    assert int(module.anchors_without_positive) == 3


def test_supcon_multilabel_positives_share_a_label():
    feats = _randn(4, 2, 3, seed=21)
    multi = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    # Sample 0 shares label 0 with sample 1, sample 1 shares label 1 with sample 3.
    got = ck.supcon(feats, multi, temperature=0.2)
    bsz, views = 4, 2

    def shares(i, j):
        return bool((multi[i] * multi[j]).sum() > 0)

    z = [_unit(feats[i, v]) for v in range(views) for i in range(bsz)]
    losses = []
    for i in range(len(z)):
        pos = [p for p in range(len(z)) if p != i and shares(p % bsz, i % bsz)]
        denom = _log_sum_exp([(z[i] @ z[k]) / 0.2 for k in range(len(z)) if k != i])
        losses.append(-sum((z[i] @ z[p]) / 0.2 - denom for p in pos) / len(pos))
    torch.testing.assert_close(got, torch.stack(losses).mean())


def test_supcon_without_labels_is_nt_xent():
    a, b = _randn(6, 4, seed=22), _randn(6, 4, seed=23)
    torch.testing.assert_close(
        ck.supcon(torch.stack([a, b], 1), temperature=0.5), ck.nt_xent(a, b, temperature=0.5)
    )


@pytest.mark.parametrize("symmetric", [False, True])
def test_cwcl_matches_reference(symmetric):
    a, b, keys = _randn(6, 4, seed=24), _randn(6, 4, seed=25), _randn(6, 7, seed=26)
    _check(
        lambda a, b, chunk_size: ck.cwcl(
            a,
            b,
            weight_embeddings=keys,
            temperature=0.3,
            symmetric=symmetric,
            chunk_size=chunk_size,
        ),
        lambda a, b: ref_cwcl(a, b, keys, 0.3, symmetric),
        [a, b],
    )


def test_cwcl_weight_temperature_matches_reference():
    a, b, keys = _randn(6, 4, seed=24), _randn(6, 4, seed=25), _randn(6, 7, seed=26)
    _check(
        lambda a, b, chunk_size: ck.cwcl(
            a,
            b,
            weight_embeddings=keys,
            temperature=0.3,
            weight_temperature=0.2,
            chunk_size=chunk_size,
        ),
        lambda a, b: ref_cwcl(a, b, keys, 0.3, weight_tau=0.2),
        [a, b],
    )
    # negative control: another kernel width gives another loss
    sharp = ck.cwcl(a, b, weight_embeddings=keys, temperature=0.3, weight_temperature=0.2)
    flat = ck.cwcl(a, b, weight_embeddings=keys, temperature=0.3, weight_temperature=2.0)
    assert not torch.allclose(sharp, flat)


def test_cwcl_weight_temperature_errors():
    a, b = _randn(4, 3, seed=1), _randn(4, 3, seed=2)
    with pytest.raises(ValueError, match="weight_temperature must be"):
        ck.cwcl(a, b, weight_temperature=0.0)
    with pytest.raises(ValueError, match="weight_fn or weight_temperature"):
        ck.cwcl(a, b, weight_fn=torch.relu, weight_temperature=0.1)
    with pytest.raises(ValueError, match="weight_temperature must be"):
        ck.CWCLLoss(weight_temperature=-1.0)


def test_cwcl_with_identity_weights_equals_clip():
    a, b = _randn(5, 4, seed=27), _randn(5, 4, seed=28)
    keys = torch.eye(5, dtype=D)  # orthonormal: cos = δ_ij
    got = ck.cwcl(a, b, weight_embeddings=keys, temperature=0.1, weight_fn=torch.relu)
    torch.testing.assert_close(got, ck.clip_loss(a, b, temperature=0.1))
    # with the default (cos+1)/2 weights the off-diagonal pairs count: a different loss
    assert not torch.allclose(ck.cwcl(a, b, weight_embeddings=keys, temperature=0.1), got)


def test_reductions_agree():
    a, b = _randn(6, 4, seed=29), _randn(6, 4, seed=30)
    for fn, n_rows in (
        (ck.info_nce, 6),
        (ck.nt_xent, 12),
        (ck.dcl, 12),
        (ck.siglip, 6),
        (ck.cwcl, 6),
    ):
        per_anchor = fn(a, b, reduction="none")
        assert per_anchor.shape == (n_rows,), fn.__name__
        torch.testing.assert_close(per_anchor.mean(), fn(a, b))
        torch.testing.assert_close(per_anchor.sum(), fn(a, b, reduction="sum"))


def test_half_precision_inputs_return_fp32_close_to_fp64():
    a, b = _randn(64, 16, seed=31), _randn(64, 16, seed=32)
    for dtype in (torch.float16, torch.bfloat16):
        for fn in (ck.info_nce, ck.nt_xent, ck.clip_loss, ck.dcl, ck.siglip):
            got = fn(a.to(dtype), b.to(dtype))
            assert got.dtype == torch.float32
            # fp16/bf16 rounding of the inputs only: a loose, dtype-aware tolerance
            tol = 0.02 if dtype == torch.bfloat16 else 0.005
            torch.testing.assert_close(got.double(), fn(a, b), rtol=tol, atol=tol)


def ref_debiased_nt_xent(a, b, t, tau_plus, beta):
    """Chuang et al. / Robinson et al. reference code semantics, written as loops."""
    n = a.shape[0]
    z = _unit(torch.cat([a, b]))
    losses = []
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        pos = torch.exp((z[i] @ z[p]) / t)
        negs = [torch.exp((z[i] @ z[k]) / t) for k in range(2 * n) if k not in (i, p)]
        big_n = len(negs)
        if beta == 0:
            reweight = sum(negs)
        else:
            imp = [torch.exp(beta * (z[i] @ z[k]) / t) for k in range(2 * n) if k not in (i, p)]
            reweight = sum(m * g for m, g in zip(imp, negs, strict=True)) / (sum(imp) / big_n)
        ng = (-tau_plus * big_n * pos + reweight) / (1 - tau_plus)
        ng = torch.clamp(ng, min=big_n * math.exp(-1 / t))
        losses.append(-torch.log(pos / (pos + ng)))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("tau_plus,beta", [(0.1, 0.0), (0.0, 1.0), (0.1, 1.0), (0.3, 0.5)])
def test_debiased_and_hard_negative_nt_xent_match_reference(tau_plus, beta):
    a, b = _randn(6, 4, seed=40), _randn(6, 4, seed=41)
    _check(
        lambda a, b, chunk_size: ck.nt_xent(
            a, b, temperature=0.5, debias_prior=tau_plus, hardness=beta, chunk_size=chunk_size
        ),
        lambda a, b: ref_debiased_nt_xent(a, b, 0.5, tau_plus, beta),
        [a, b],
    )


def test_debiased_clamp_is_active_for_large_prior():
    # τ⁺ close to 1 drives (R - τ⁺·N·pos) below the floor N·e^{-1/t}: the clamp must hold.
    a = _randn(5, 3, seed=42)
    b = a + 0.01 * _randn(5, 3, seed=43)  # strong positives
    got = ck.nt_xent(a, b, temperature=0.5, debias_prior=0.9)
    torch.testing.assert_close(got, ref_debiased_nt_xent(a, b, 0.5, 0.9, 0.0))
    assert torch.isfinite(got)


def test_zero_prior_and_hardness_is_plain_nt_xent():
    a, b = _randn(6, 4, seed=44), _randn(6, 4, seed=45)
    torch.testing.assert_close(
        ck.nt_xent(a, b, debias_prior=0.0, hardness=0.0), ref_nt_xent(a, b, 0.5)
    )
    with pytest.raises(ValueError, match="debias_prior"):
        ck.nt_xent(a, b, debias_prior=1.0)
    with pytest.raises(ValueError, match="hardness"):
        ck.nt_xent(a, b, hardness=-1.0)
