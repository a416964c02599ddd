"""Metrix (contrastive and Multi-Similarity): loop references, PML parity, closed forms, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.metrix import (
    MetrixContrastiveLoss,
    MetrixMixes,
    MetrixMultiSimilarityLoss,
    metrix_contrastive,
    metrix_mixes,
    metrix_multi_similarity,
)
from contrastkit.losses.multi_similarity import multi_similarity_loss, multi_similarity_mine

D64 = torch.float64


def _batch(n: int = 8, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])[:n]
    return emb, labels


def _mixed_list(labels, mode, lam_of):
    """Explicit mixed examples from the definitions (loops)."""
    n = len(labels)
    out = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [k for k in range(n) if labels[k] != labels[a]]
        firsts = pos if mode == "positive_negative" else [a]
        for f in firsts:
            for k in neg:
                out.append((a, f, k))
    return [(a, f, k, lam_of(t)) for t, (a, f, k) in enumerate(out)]


def ref_contrastive(emb, labels, mixed, m_pos, m_neg, w):
    z = F.normalize(emb, dim=1)
    n = z.shape[0]
    pos_terms, neg_terms = [], []
    for a in range(n):
        for j in range(n):
            if j == a:
                continue
            d = torch.linalg.vector_norm(z[a] - z[j])
            if labels[a] == labels[j]:
                pos_terms.append(torch.relu(d - m_pos))
            else:
                neg_terms.append(torch.relu(m_neg - d))
    clean = torch.stack(pos_terms).mean() + torch.stack(neg_terms).mean()
    mix_terms = []
    for a, f, k, lam in mixed:
        u = F.normalize(lam * z[f] + (1 - lam) * z[k], dim=0)
        d = torch.linalg.vector_norm(z[a] - u)
        mix_terms.append(lam * torch.relu(d - m_pos) + (1 - lam) * torch.relu(m_neg - d))
    return clean + w * torch.stack(mix_terms).mean()


def ref_ms_mix(emb, labels, mixed, alpha, beta, base):
    z = F.normalize(emb, dim=1)
    n = z.shape[0]
    total = z.new_zeros(())
    for a in range(n):
        pos_sum, neg_sum = z.new_ones(()), z.new_ones(())
        for a2, f, k, lam in mixed:
            if a2 != a:
                continue
            u = F.normalize(lam * z[f] + (1 - lam) * z[k], dim=0)
            s = torch.dot(z[a], u)
            pos_sum = pos_sum + lam * torch.exp(-alpha * (s - base))
            neg_sum = neg_sum + (1 - lam) * torch.exp(beta * (s - base))
        total = total + torch.log(pos_sum) / alpha + torch.log(neg_sum) / beta
    return total / n


def _as_mixes(mixed):
    a, f, k, lam = zip(*mixed, strict=True)
    return MetrixMixes(
        torch.tensor(a), torch.tensor(f), torch.tensor(k), torch.tensor(lam, dtype=D64)
    )


def _lams(t):
    return 0.1 + 0.8 * ((t * 0.377) % 1.0)


@pytest.mark.parametrize("mode", ["positive_negative", "anchor_negative"])
@pytest.mark.parametrize(("m_pos", "m_neg"), [(0.0, 0.5), (0.2, 1.2)])
def test_contrastive_matches_loop_reference(mode, m_pos, m_neg):
    emb, labels = _batch()
    mixed = _mixed_list(labels.tolist(), mode, _lams)
    ours = metrix_contrastive(
        emb, labels, mixes=_as_mixes(mixed), pos_margin=m_pos, neg_margin=m_neg, mix_weight=0.4
    )
    ref = ref_contrastive(emb, labels, mixed, m_pos, m_neg, 0.4)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, emb)[0], torch.autograd.grad(ref, emb)[0])


def test_default_mixes_enumerate_every_triplet():
    _, labels = _batch()
    for mode in ("positive_negative", "anchor_negative"):
        mixes = metrix_mixes(labels, mode=mode, lam=0.3)
        got = set(
            zip(mixes.anchor.tolist(), mixes.first.tolist(), mixes.negative.tolist(), strict=True)
        )
        want = {(a, f, k) for a, f, k, _ in _mixed_list(labels.tolist(), mode, lambda t: 0.3)}
        assert got == want and len(got) == mixes.anchor.numel()
    m1 = metrix_mixes(labels, generator=torch.Generator().manual_seed(4))
    m2 = metrix_mixes(labels, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(m1.lambdas, m2.lambdas)
    assert float(m1.lambdas.std()) > 0  # one draw per mixed example


@pytest.mark.parametrize("mode", ["positive_negative", "anchor_negative"])
def test_multi_similarity_matches_loop_reference(mode):
    emb, labels = _batch(seed=2)
    mixed = _mixed_list(labels.tolist(), mode, _lams)
    ours = metrix_multi_similarity(
        emb, labels, mixes=_as_mixes(mixed), alpha=2.0, beta=10.0, base=0.5, mix_weight=0.3
    )
    ref = multi_similarity_loss(emb, labels, alpha=2.0, beta=10.0, base=0.5) + 0.3 * ref_ms_mix(
        emb, labels, mixed, 2.0, 10.0, 0.5
    )
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, emb)[0], torch.autograd.grad(ref, emb)[0])


def test_lambda_one_closed_forms():
    emb, labels = _batch(seed=3)
    z = F.normalize(emb.detach(), dim=1)
    mixes = metrix_mixes(labels, lam=1.0)  # ũ = the positive: a pure positive pair
    ours = metrix_contrastive(emb, labels, mixes=mixes, mix_weight=1.0)
    clean = metrix_contrastive(emb, labels, mix_weight=0.0)
    d = torch.linalg.vector_norm(z[mixes.anchor] - z[mixes.first], dim=1)
    torch.testing.assert_close(ours - clean, d.mean())
    # anchor_negative with λ = 1: ũ = the anchor, distance 0: the mixed term is [0 - m⁺]₊ = 0.
    mixes = metrix_mixes(labels, mode="anchor_negative", lam=1.0)
    torch.testing.assert_close(metrix_contrastive(emb, labels, mixes=mixes), clean)


def test_zero_weight_is_clean_and_peer_parity():
    from peers import load_pml

    pml_losses = load_pml()
    from pytorch_metric_learning.reducers import MeanReducer

    emb, labels = _batch(seed=5)
    ours = metrix_contrastive(emb, labels, mix_weight=0.0, pos_margin=0.1, neg_margin=0.7)
    peer = pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.7, reducer=MeanReducer())
    ref = peer(emb, labels)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, emb)[0], torch.autograd.grad(ref, emb)[0])
    mined = multi_similarity_mine(emb, labels)
    ours = metrix_multi_similarity(emb, labels, indices_tuple=mined, mix_weight=0.0)
    ref = pml_losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)(emb, labels, mined)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, emb)[0], torch.autograd.grad(ref, emb)[0])


def test_negative_control_lambda_changes_gradient():
    emb, labels = _batch()
    g1 = torch.autograd.grad(metrix_contrastive(emb, labels, lam=0.2), emb)[0]
    g2 = torch.autograd.grad(metrix_contrastive(emb, labels, lam=0.8), emb)[0]
    assert not torch.allclose(g1, g2)
    g1 = torch.autograd.grad(metrix_multi_similarity(emb, labels, lam=0.2), emb)[0]
    g2 = torch.autograd.grad(metrix_multi_similarity(emb, labels, lam=0.8), emb)[0]
    assert not torch.allclose(g1, g2)


def test_bad_inputs():
    emb, labels = _batch()
    with pytest.raises(ValueError, match="mode"):
        metrix_contrastive(emb, labels, mode="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam"):
        metrix_contrastive(emb, labels, lam=1.5)
    with pytest.raises(ValueError, match="mix_alpha"):
        metrix_contrastive(emb, labels, mix_alpha=0.0)
    with pytest.raises(ValueError, match="mix_weight"):
        metrix_contrastive(emb, labels, mix_weight=-1.0)
    bad = MetrixMixes(torch.tensor([0]), torch.tensor([1]), torch.tensor([99]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="negative has indices"):
        metrix_contrastive(emb, labels, mixes=bad)
    with pytest.raises(ValueError, match="labels"):
        metrix_multi_similarity(emb, labels[:3])
    with pytest.raises(ValueError, match="NaN"):
        metrix_contrastive(emb.detach() * math.nan, labels)
    with pytest.raises(ValueError, match="beta"):
        MetrixMultiSimilarityLoss(beta=0.0)


def test_modules_match_functions():
    emb, labels = _batch()
    mixes = metrix_mixes(labels, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        MetrixContrastiveLoss(neg_margin=0.8)(emb, labels, mixes),
        metrix_contrastive(emb, labels, mixes=mixes, neg_margin=0.8),
    )
    torch.testing.assert_close(
        MetrixMultiSimilarityLoss(beta=20.0)(emb, labels, None, mixes),
        metrix_multi_similarity(emb, labels, mixes=mixes, beta=20.0),
    )
