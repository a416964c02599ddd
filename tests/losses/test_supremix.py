"""SupReMix: float64 loop reference with explicit mixture embeddings, SupCon reduction, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.supcon import supcon
from contrastkit.losses.supremix import (
    SupReMixLoss,
    supremix,
    supremix_weight_l1,
    supremix_weight_l1_inv,
    supremix_weight_l2,
    supremix_weight_l2_inv,
)

D64 = torch.float64
LABELS = torch.tensor([20, 21, 22, 20, 24, 21])


def _batch(views: int = 2, seed: int = 0, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(LABELS), views, d, generator=g, dtype=D64, requires_grad=True)
    n = len(LABELS) * views
    lam = torch.rand(n, n, generator=g, dtype=D64)
    return emb, lam


def ref_supremix(emb, labels, tau, lam, mix_neg, mix_pos, max_dist, weight, detach):
    """Build every candidate (batch rows and mixture embeddings) and loop over them."""
    b, v, _ = emb.shape
    z = F.normalize(emb, dim=-1).transpose(0, 1).reshape(b * v, -1)
    y = [float(t) for t in labels.repeat(v)]
    n = len(y)
    zbar = z.detach() if detach else z
    w = weight if weight is not None else (lambda t: torch.ones_like(t))
    total, count = z.new_zeros(()), 0
    for i in range(n):
        cands = []  # (embedding, label, is_positive)
        for a in range(n):
            if a != i:
                cands.append((z[a], y[a], y[a] == y[i]))
        if mix_neg:
            for k in range(n):
                if y[k] != y[i]:
                    lk = float(lam[i, k])
                    cands.append(
                        (lk * zbar[i] + (1 - lk) * zbar[k], lk * y[i] + (1 - lk) * y[k], False)
                    )
        if mix_pos:
            for j in range(n):
                for k in range(n):
                    if not (y[j] < y[i] < y[k]):
                        continue
                    if max_dist is not None and not (
                        y[i] - y[j] < max_dist and y[k] - y[i] < max_dist
                    ):
                        continue
                    lj = (y[k] - y[i]) / (y[k] - y[j])
                    m = lj * zbar[j] + (1 - lj) * zbar[k]
                    cands.append((m, lj * y[j] + (1 - lj) * y[k], True))
        pos = [c for c in cands if c[2]]
        if not pos:
            continue
        denom = sum(
            w(torch.tensor(abs(y[i] - lab), dtype=D64)) * torch.exp(torch.dot(z[i], e) / tau)
            for e, lab, _ in cands
        )
        li = -sum(torch.dot(z[i], e) / tau - torch.log(denom) for e, _, _ in pos) / len(pos)
        total = total + li
        count += 1
    return total / count


CASES = [
    # mix_neg, mix_pos, max_dist, weight, detach
    (True, True, None, None, True),
    (True, False, None, supremix_weight_l1, True),
    (False, True, 3.0, supremix_weight_l2_inv, True),
    (True, True, None, supremix_weight_l1_inv, False),
    (True, True, 2.5, supremix_weight_l2, False),
]


@pytest.mark.parametrize(("mix_neg", "mix_pos", "max_dist", "weight", "detach"), CASES)
def test_matches_loop_reference(mix_neg, mix_pos, max_dist, weight, detach):
    emb, lam = _batch()
    ours = supremix(
        emb,
        LABELS,
        temperature=0.5,
        negative_lambdas=lam,
        mix_negatives=mix_neg,
        mix_positives=mix_pos,
        max_label_distance=max_dist,
        label_weight=weight,
        detach_mixtures=detach,
    )
    ref = ref_supremix(emb, LABELS, 0.5, lam, mix_neg, mix_pos, max_dist, weight, detach)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, emb)[0], torch.autograd.grad(ref, emb)[0])


def test_tiled_equals_dense_and_float_labels():
    emb, lam = _batch(seed=1)
    kw = dict(negative_lambdas=lam, label_weight=supremix_weight_l1)
    dense = supremix(emb, LABELS, **kw)
    tiled = supremix(emb, LABELS, chunk_size=5, **kw)
    torch.testing.assert_close(dense, tiled)
    torch.testing.assert_close(
        torch.autograd.grad(dense, emb)[0], torch.autograd.grad(tiled, emb)[0]
    )
    as_float = supremix(emb, LABELS.double() / 2, negative_lambdas=lam, max_label_distance=1.5)
    as_int = supremix(emb, LABELS, negative_lambdas=lam, max_label_distance=3.0)
    torch.testing.assert_close(as_float, as_int)  # only the label *order* and equality matter


def test_positive_block_chunking(monkeypatch):
    import importlib

    # the package re-exports the function `supremix`, which shadows the submodule attribute
    mod = importlib.import_module("contrastkit.losses.supremix")

    emb, lam = _batch(seed=2)
    full = supremix(emb, LABELS, negative_lambdas=lam)
    g_full = torch.autograd.grad(full, emb)[0]
    monkeypatch.setattr(mod, "_POSITIVE_BLOCK", 1)  # one anchor per checkpointed block
    small = supremix(emb, LABELS, negative_lambdas=lam)
    torch.testing.assert_close(full, small)
    torch.testing.assert_close(g_full, torch.autograd.grad(small, emb)[0])


def test_without_mixtures_is_supcon():
    emb, _ = _batch()
    ours = supremix(
        emb,
        LABELS,
        mix_negatives=False,
        mix_positives=False,
        temperature=0.1,
        base_temperature=0.07,
        reduction="none",
    )
    ref = supcon(emb, LABELS, temperature=0.1, base_temperature=0.07, reduction="none")
    torch.testing.assert_close(ours, ref)


def test_negative_lambda_one_closed_form():
    # λ = 1: every negative mixture is the anchor itself, logit 1/τ for each other-label row.
    emb, _ = _batch(views=1)
    n = len(LABELS)
    ones = torch.ones(n, n, dtype=D64)
    tau = 0.5
    ours = supremix(
        emb, LABELS, negative_lambdas=ones, mix_positives=False, temperature=tau, reduction="none"
    )
    z = F.normalize(emb.detach()[:, 0], dim=1)
    s = z @ z.T / tau
    for i in range(n):
        pos = [j for j in range(n) if j != i and LABELS[j] == LABELS[i]]
        if not pos:
            assert float(ours[i].detach()) == 0.0
            continue
        others = [s[i, j] for j in range(n) if j != i]
        n_neg = sum(1 for j in range(n) if LABELS[j] != LABELS[i])
        lse = torch.logsumexp(torch.stack(others + [torch.tensor(1 / tau, dtype=D64)] * n_neg), 0)
        torch.testing.assert_close(ours[i], lse - torch.stack([s[i, p] for p in pos]).mean())


def test_generator_reproducible_and_negative_control():
    emb, lam = _batch()
    l1 = supremix(emb, LABELS, generator=torch.Generator().manual_seed(3))
    l2 = supremix(emb, LABELS, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(l1, l2)
    g1 = torch.autograd.grad(supremix(emb, LABELS, negative_lambdas=lam), emb)[0]
    g2 = torch.autograd.grad(supremix(emb, LABELS, negative_lambdas=1 - lam), emb)[0]
    assert not torch.allclose(g1, g2)
    g3 = torch.autograd.grad(
        supremix(emb, LABELS, negative_lambdas=lam, label_weight=supremix_weight_l2_inv), emb
    )[0]
    assert not torch.allclose(g1, g3)


def test_bad_inputs():
    emb, lam = _batch()
    with pytest.raises(ValueError, match="labels must be a numeric"):
        supremix(emb, LABELS[:3])
    with pytest.raises(ValueError, match="labels contains NaN"):
        supremix(emb, torch.full((6,), math.nan))
    with pytest.raises(ValueError, match="negative_lambdas must have shape"):
        supremix(emb, LABELS, negative_lambdas=lam[:3])
    with pytest.raises(ValueError, match="negative_lambdas must lie"):
        supremix(emb, LABELS, negative_lambdas=lam + 1)
    with pytest.raises(ValueError, match="max_label_distance"):
        supremix(emb, LABELS, max_label_distance=0.0)
    with pytest.raises(ValueError, match="negative_beta"):
        supremix(emb, LABELS, negative_beta=(0.0, 1.0))
    with pytest.raises(ValueError, match="no anchor has a positive"):
        supremix(emb[:, :1], torch.arange(6), mix_positives=False)
    with pytest.raises(ValueError, match="temperature"):
        SupReMixLoss(temperature=0.0)


def test_module_matches_function():
    emb, lam = _batch()
    mod = SupReMixLoss(label_weight=supremix_weight_l1, reduction="sum")
    g = torch.Generator().manual_seed(9)
    got = mod(emb, LABELS, generator=g)
    want = supremix(
        emb,
        LABELS,
        label_weight=supremix_weight_l1,
        reduction="sum",
        generator=torch.Generator().manual_seed(9),
    )
    torch.testing.assert_close(got, want)
