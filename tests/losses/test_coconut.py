"""COCONUT NSPT/NTPT and source-based SupCon: loop reference, SupCon reduction, tiled == dense."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.coconut import CoconutLoss, coconut_loss
from contrastkit.losses.source_supcon import SourceSupConLoss, source_supcon
from contrastkit.losses.supcon import supcon

D64 = torch.float64


def _batch(n: int = 9, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    t = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 0, 2, 4])[:n]
    mask = torch.tensor([True, True, False, True, False, True, False, False, True])[:n]
    return s, t, labels, mask


def ref_source_supcon(h, labels, pos_src, neg_src, mask, tau, exclude_self):
    """Float64 loops over anchors, positives and negatives, from the written formula."""
    h, hp, hn = (F.normalize(x, dim=1) for x in (h, pos_src, neg_src))
    n = h.shape[0]
    total, count = h.new_zeros(()), 0
    for i in range(n):
        if mask is not None and not bool(mask[i]):
            continue
        pos = [p for p in range(n) if labels[p] == labels[i] and not (exclude_self and p == i)]
        neg = [k for k in range(n) if labels[k] != labels[i]]
        if not pos:
            continue
        denom = sum(torch.exp(torch.dot(h[i], hp[p]) / tau) for p in pos)
        denom = denom + sum(torch.exp(torch.dot(h[i], hn[k]) / tau) for k in neg)
        li = -sum(torch.log(torch.exp(torch.dot(h[i], hp[p]) / tau) / denom) for p in pos)
        total = total + li / len(pos)
        count += 1
    return total / count


@pytest.mark.parametrize("teacher_negatives", [False, True])
@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("chunk", [None, 2, 4])
def test_coconut_matches_loop_reference(teacher_negatives, exclude_self, chunk):
    s, t, labels, mask = _batch()
    ours = coconut_loss(
        s,
        t,
        labels,
        mask,
        teacher_negatives=teacher_negatives,
        exclude_self_positive=exclude_self,
        temperature=0.3,
        chunk_size=chunk,
    )
    neg = t.detach() if teacher_negatives else s
    ref = ref_source_supcon(s, labels, t.detach(), neg, mask, 0.3, exclude_self)
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours, s)[0]
    g_ref = torch.autograd.grad(ref, s)[0]
    torch.testing.assert_close(g_ours, g_ref)
    # The teacher is frozen: no gradient reaches it.
    ours = coconut_loss(s, t, labels, mask, teacher_negatives=teacher_negatives)
    assert torch.autograd.grad(ours, t, allow_unused=True)[0] is None


def test_source_supcon_gradients_reach_every_source():
    s, t, labels, mask = _batch(seed=1)
    u = torch.randn_like(s, requires_grad=True)
    ours = source_supcon(s, labels, t, u, anchor_mask=mask, temperature=0.2)
    ref = ref_source_supcon(s, labels, t, u, mask, 0.2, False)
    for g1, g2 in zip(
        torch.autograd.grad(ours, (s, t, u)), torch.autograd.grad(ref, (s, t, u)), strict=True
    ):
        torch.testing.assert_close(g1, g2)


def test_tiled_equals_dense_float32():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(23, 8, generator=g, requires_grad=True)
    t = torch.randn(23, 8, generator=g)
    labels = torch.randint(0, 5, (23,), generator=g)
    mask = torch.rand(23, generator=g) < 0.5
    dense = coconut_loss(s, t, labels, mask)
    tiled = coconut_loss(s, t, labels, mask, chunk_size=5)
    torch.testing.assert_close(dense, tiled)
    torch.testing.assert_close(torch.autograd.grad(dense, s)[0], torch.autograd.grad(tiled, s)[0])


def test_all_student_sources_is_supcon():
    s, _, labels, _ = _batch()
    ours = source_supcon(
        s,
        labels,
        s,
        s,
        exclude_self_positive=True,
        temperature=0.1,
        base_temperature=0.07,
        reduction="none",
    )
    ref = supcon(s, labels, temperature=0.1, base_temperature=0.07, reduction="none")
    torch.testing.assert_close(ours, ref)


def test_mask_restricts_anchors_and_negative_control():
    s, t, labels, mask = _batch()
    per = coconut_loss(s, t, labels, mask, reduction="none")
    assert bool((per[~mask] == 0).all())
    everyone = coconut_loss(s, t, labels, torch.ones_like(mask), reduction="none")
    torch.testing.assert_close(per[mask], everyone[mask])
    g_nspt = torch.autograd.grad(coconut_loss(s, t, labels, mask), s)[0]
    g_ntpt = torch.autograd.grad(coconut_loss(s, t, labels, mask, teacher_negatives=True), s)[0]
    assert not torch.allclose(g_nspt, g_ntpt)


def test_closed_form_two_samples():
    # One anchor with its own teacher view as the only positive and one negative.
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=D64)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=D64)
    labels = torch.tensor([0, 1])
    mask = torch.tensor([True, False])
    tau = 0.5
    ours = coconut_loss(s, t, labels, mask, temperature=tau)
    # s_pos = 1/τ, s_neg = <s0, s1>/τ = 0.
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 1.0))
    torch.testing.assert_close(ours, torch.tensor(expected, dtype=D64))


def test_bad_inputs():
    s, t, labels, mask = _batch()
    with pytest.raises(ValueError, match="rehearsal_mask"):
        coconut_loss(s, t, labels, mask.long())
    with pytest.raises(ValueError, match="anchors and positives must have the same shape"):
        source_supcon(s, labels, t[:4], s)
    with pytest.raises(ValueError, match="labels"):
        coconut_loss(s, t, labels.float(), mask)
    with pytest.raises(ValueError, match="no anchor has a positive"):
        coconut_loss(s, t, torch.arange(9), mask, exclude_self_positive=True)
    with pytest.raises(ValueError, match="NaN"):
        coconut_loss(s.detach() * math.nan, t, labels, mask)
    with pytest.raises(ValueError, match="temperature"):
        CoconutLoss(temperature=-1.0)
    with pytest.raises(ValueError, match="base_temperature"):
        SourceSupConLoss(base_temperature=0.0)


def test_modules_match_functions():
    s, t, labels, mask = _batch()
    torch.testing.assert_close(
        CoconutLoss(temperature=0.2, teacher_negatives=True)(s, t, labels, mask),
        coconut_loss(s, t, labels, mask, temperature=0.2, teacher_negatives=True),
    )
    torch.testing.assert_close(
        SourceSupConLoss(reduction="sum")(s, labels, t, s, mask),
        source_supcon(s, labels, t, s, anchor_mask=mask, reduction="sum"),
    )


def test_nspt_with_the_student_as_teacher_is_supcon_on_rehearsal_anchors():
    # The paper: NSPT is "a modified version of the standard supervised contrastive loss applied
    # only to the rehearsal samples". With teacher = student and the self-pair excluded, the
    # only modification left is the anchor set: SupCon's L_out (Khosla et al. Eq. 2, tau/tau_b = 1)
    # averaged over the rehearsal rows. Written here from that equation, in float64 loops.
    g = torch.Generator().manual_seed(5)
    z = torch.randn(10, 6, generator=g, dtype=D64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 3])
    rehearsal = torch.tensor([True, False, True, False, True, False, False, False, False, False])
    tau = 0.2
    ours = coconut_loss(z, z, labels, rehearsal, exclude_self_positive=True, temperature=tau)
    zn = F.normalize(z, dim=1)
    zt = zn.detach()  # the teacher's copy: frozen, so the positives carry no gradient
    terms = []
    for i in range(10):
        if not rehearsal[i]:
            continue
        others = [a for a in range(10) if a != i]
        src = [zt[a] if labels[a] == labels[i] else zn[a] for a in others]
        log_den = torch.logsumexp(torch.stack([zn[i] @ v / tau for v in src]), 0)
        pos = [p for p in others if labels[p] == labels[i]]
        terms.append(-sum(zn[i] @ zt[p] / tau - log_den for p in pos) / len(pos))
    ref = torch.stack(terms).mean()
    torch.testing.assert_close(ours, ref)
    supcon_value = supcon(z, labels, temperature=tau, base_temperature=tau, reduction="none")
    torch.testing.assert_close(ours, supcon_value[rehearsal].mean())
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0], torch.autograd.grad(ref, z)[0])
