from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.multi_similarity import (
    MultiSimilarityLoss,
    MultiSimilarityMiner,
    multi_similarity_loss,
    multi_similarity_mine,
)

D64 = torch.float64


# ----------------------------------------------------------------------------- loop references
def ref_ms_loss(
    emb: torch.Tensor,
    labels: list[int],
    alpha: float,
    beta: float,
    base: float,
    pairs: tuple[set[tuple[int, int]], set[tuple[int, int]]] | None = None,
) -> torch.Tensor:
    z = F.normalize(emb, dim=1)
    n = z.shape[0]
    total = z.new_zeros(())
    for i in range(n):
        if pairs is None:
            pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
            neg = [j for j in range(n) if labels[j] != labels[i]]
        else:
            pos = [j for (a, j) in sorted(pairs[0]) if a == i]
            neg = [j for (a, j) in sorted(pairs[1]) if a == i]
        s_pos = z.new_ones(())
        for j in pos:
            s_pos = s_pos + torch.exp(-alpha * (torch.dot(z[i], z[j]) - base))
        s_neg = z.new_ones(())
        for j in neg:
            s_neg = s_neg + torch.exp(beta * (torch.dot(z[i], z[j]) - base))
        total = total + torch.log(s_pos) / alpha + torch.log(s_neg) / beta
    return total / n


def ref_mine(emb: torch.Tensor, labels: list[int], eps: float):
    z = F.normalize(emb.detach(), dim=1)
    n = z.shape[0]
    keep_pos, keep_neg = set(), set()
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(n) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        s = [float(torch.dot(z[i], z[j])) for j in range(n)]
        min_pos = min(s[j] for j in pos)
        max_neg = max(s[j] for j in neg)
        keep_pos |= {(i, j) for j in pos if s[j] - eps < max_neg}
        keep_neg |= {(i, j) for j in neg if s[j] + eps > min_pos}
    return keep_pos, keep_neg


def _as_sets(t):
    a1, p, a2, n = (x.tolist() for x in t)
    return set(zip(a1, p, strict=True)), set(zip(a2, n, strict=True))


def _batch(n: int = 12, d: int = 6, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=D64, requires_grad=True)
    labels = torch.arange(n) % classes
    return emb, labels


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize(
    ("alpha", "beta", "base"), [(2.0, 50.0, 0.5), (1.0, 10.0, 0.0), (3.0, 5.0, -0.2)]
)
def test_loss_matches_loop_reference(alpha: float, beta: float, base: float) -> None:
    emb, labels = _batch()
    ours = multi_similarity_loss(emb, labels, alpha=alpha, beta=beta, base=base)
    ref = ref_ms_loss(emb, labels.tolist(), alpha, beta, base)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(ours, emb)
    (g2,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)


def test_miner_matches_loop_reference_and_loss_with_mined_pairs() -> None:
    emb, labels = _batch(n=16, classes=5, seed=1)
    mined = multi_similarity_mine(emb, labels, epsilon=0.1)
    assert _as_sets(mined) == ref_mine(emb, labels.tolist(), 0.1)
    assert len(mined[0]) > 0 and len(mined[2]) > 0
    ours = multi_similarity_loss(emb, labels, indices_tuple=mined)
    ref = ref_ms_loss(
        emb, labels.tolist(), 2.0, 50.0, 0.5, pairs=ref_mine(emb, labels.tolist(), 0.1)
    )
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(ours, emb)
    (g2,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)


def test_mining_actually_drops_pairs() -> None:
    # Negative control for the mined parity: easy negatives are dropped, so values differ.
    emb, labels = _batch(n=16, classes=4, seed=2)
    a1, p, a2, n = multi_similarity_mine(emb, labels, epsilon=0.1)
    all_pos = sum(int((labels == c).sum()) * (int((labels == c).sum()) - 1) for c in range(4))
    assert len(a2) < 16 * 12 or len(a1) < all_pos
    # Small beta/base so that the dropped easy pairs carry visible weight.
    full = multi_similarity_loss(emb, labels, alpha=2.0, beta=2.0, base=0.0)
    mined = multi_similarity_loss(emb, labels, (a1, p, a2, n), alpha=2.0, beta=2.0, base=0.0)
    assert (full - mined).abs().item() > 1e-3


# ----------------------------------------------------------------------------- closed forms
def test_closed_form_two_classes_orthogonal() -> None:
    # Two classes on orthogonal axes: S_pos = 1, S_neg = 0 for every anchor.
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=D64)
    labels = torch.tensor([0, 0, 1, 1])
    a, b, lam = 2.0, 50.0, 0.5
    expected = (
        math.log1p(math.exp(-a * (1 - lam))) / a + math.log1p(2 * math.exp(b * (0 - lam))) / b
    )
    assert multi_similarity_loss(emb, labels, alpha=a, beta=b, base=lam).item() == pytest.approx(
        expected, rel=1e-12
    )


def test_closed_form_miner_keeps_violating_pairs_only() -> None:
    # anchor 0: positive at cos 0.6, negatives at cos 0.55 (hard) and -1 (easy).
    c, s = 0.6, math.sqrt(1 - 0.36)
    emb = torch.tensor(
        [[1.0, 0.0], [c, s], [0.55, -math.sqrt(1 - 0.55**2)], [-1.0, 0.0]], dtype=D64
    )
    labels = torch.tensor([0, 0, 1, 2])
    a1, p, a2, n = multi_similarity_mine(emb, labels, epsilon=0.1)
    pos_pairs, neg_pairs = (
        set(zip(a1.tolist(), p.tolist(), strict=True)),
        set(zip(a2.tolist(), n.tolist(), strict=True)),
    )
    assert (0, 1) in pos_pairs  # 0.6 - 0.1 < 0.55
    assert (0, 2) in neg_pairs and (0, 3) not in neg_pairs
    # anchors 2 and 3 have no positive: nothing mined for them.
    assert not any(a in (2, 3) for a, _ in pos_pairs | neg_pairs)


def test_multilabel_matches_integer_labels_when_one_hot() -> None:
    emb, labels = _batch()
    one_hot = F.one_hot(labels, 4)
    torch.testing.assert_close(
        multi_similarity_loss(emb, one_hot), multi_similarity_loss(emb, labels)
    )
    assert _as_sets(multi_similarity_mine(emb, one_hot)) == _as_sets(
        multi_similarity_mine(emb, labels)
    )


def test_multilabel_shared_label_is_positive() -> None:
    emb = torch.randn(3, 4, dtype=D64)
    multi = torch.tensor([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    # 0 and 1 share label 1 -> positives; 2 is negative to both.
    ref = ref_ms_loss(emb, [0, 0, 1], 2.0, 50.0, 0.5)
    torch.testing.assert_close(multi_similarity_loss(emb, multi), ref)


def test_reduction_and_module() -> None:
    emb, labels = _batch()
    per = multi_similarity_loss(emb, labels, reduction="none")
    assert per.shape == (12,)
    torch.testing.assert_close(per.mean(), multi_similarity_loss(emb, labels))
    torch.testing.assert_close(per.sum(), multi_similarity_loss(emb, labels, reduction="sum"))
    mod = MultiSimilarityLoss(miner=MultiSimilarityMiner(epsilon=0.1))
    torch.testing.assert_close(
        mod(emb, labels),
        multi_similarity_loss(emb, labels, indices_tuple=multi_similarity_mine(emb, labels)),
    )


# ----------------------------------------------------------------------------- peer parity
class _PML:
    """pytorch-metric-learning's losses and miners, loaded through tests/peers.py."""

    def __init__(self) -> None:
        from peers import load_pml

        self.losses = load_pml()  # skips with the import error if the peer is missing
        import pytorch_metric_learning.miners as miners

        self.miners = miners


def _pml() -> _PML:
    return _PML()


@pytest.mark.parametrize(("alpha", "beta", "base"), [(2.0, 50.0, 0.5), (1.5, 20.0, 0.3)])
@pytest.mark.parametrize("use_miner", [False, True])
def test_parity_with_pytorch_metric_learning(alpha, beta, base, use_miner) -> None:
    pml = _pml()
    emb, labels = _batch(n=24, d=8, classes=5, seed=3)
    theirs_loss = pml.losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
    if use_miner:
        their_tuple = pml.miners.MultiSimilarityMiner(epsilon=0.1)(emb, labels)
        our_tuple = multi_similarity_mine(emb, labels, epsilon=0.1)
        assert _as_sets(our_tuple) == _as_sets(their_tuple)
        assert len(our_tuple[0]) > 1 and len(our_tuple[2]) > 1
        theirs = theirs_loss(emb, labels, their_tuple)
        ours = multi_similarity_loss(emb, labels, our_tuple, alpha=alpha, beta=beta, base=base)
    else:
        theirs = theirs_loss(emb, labels)
        ours = multi_similarity_loss(emb, labels, alpha=alpha, beta=beta, base=base)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(ours, emb)
    (g2,) = torch.autograd.grad(theirs, emb)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-12)


def test_parity_negative_control_other_labels_change_gradient() -> None:
    pml = _pml()
    emb, labels = _batch(n=24, d=8, classes=5, seed=3)
    other = labels.roll(1)
    g_ours = torch.autograd.grad(multi_similarity_loss(emb, other), emb)[0]
    g_theirs = torch.autograd.grad(pml.losses.MultiSimilarityLoss()(emb, labels), emb)[0]
    assert not torch.allclose(g_ours, g_theirs)


def test_parity_miner_on_many_random_batches() -> None:
    pml = _pml()
    miner = pml.miners.MultiSimilarityMiner(epsilon=0.05)
    for seed in range(5):
        emb, labels = _batch(n=20, d=3, classes=3, seed=10 + seed)
        assert _as_sets(multi_similarity_mine(emb, labels, epsilon=0.05)) == _as_sets(
            miner(emb, labels)
        )


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_error_naming_argument() -> None:
    emb, labels = _batch()
    with pytest.raises(ValueError, match="no positive pair"):
        multi_similarity_loss(emb, torch.arange(12))
    with pytest.raises(ValueError, match="alpha"):
        multi_similarity_loss(emb, labels, alpha=0.0)
    with pytest.raises(ValueError, match="beta"):
        MultiSimilarityLoss(beta=-1.0)
    with pytest.raises(ValueError, match="base"):
        MultiSimilarityLoss(base=float("nan"))
    with pytest.raises(ValueError, match="epsilon"):
        MultiSimilarityMiner(epsilon=float("inf"))
    with pytest.raises(ValueError, match="labels must have shape"):
        multi_similarity_loss(emb, labels[:5])
    with pytest.raises(ValueError, match="labels must be integer"):
        multi_similarity_loss(emb, labels.double())
    with pytest.raises(ValueError, match="embeddings needs at least 2 rows"):
        multi_similarity_loss(emb[:1], labels[:1])
    bad = emb.detach().clone()
    bad[1, 1] = float("inf")
    with pytest.raises(ValueError, match="embeddings contains NaN or inf"):
        multi_similarity_mine(bad, labels)
    a1, p, a2, n = multi_similarity_mine(emb, labels)
    with pytest.raises(ValueError, match="indices_tuple: a negative pair"):
        multi_similarity_loss(emb, labels, indices_tuple=(a1, p, a1, p))
    with pytest.raises(ValueError, match="indices_tuple: a1/p"):
        multi_similarity_loss(emb, labels, indices_tuple=(a1, p[:-1], a2, n))
    with pytest.raises(ValueError, match="outside"):
        multi_similarity_loss(emb, labels, indices_tuple=(a1 + 100, p, a2, n))
    with pytest.raises(ValueError, match="indices_tuple must be a tuple"):
        multi_similarity_loss(emb, labels, indices_tuple=(a1, p))  # type: ignore[arg-type]
