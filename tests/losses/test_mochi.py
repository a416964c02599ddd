"""MoCo loss and MoCHi hard-negative mixing: float64 loop references, per-query indexing pitfall,
parity with info_nce and lightly's memory-bank NTXent, negative controls, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peers import load_lightly_loss

from contrastkit.losses.info_nce import info_nce
from contrastkit.losses.mochi import MoCHiLoss, mochi_negatives
from contrastkit.losses.moco import MoCoLoss, moco_loss

DT = torch.float64


def _data(seed: int, batch: int = 4, dim: int = 5, k: int = 12):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, dim, generator=gen, dtype=DT)
    key = q + 0.5 * torch.randn(batch, dim, generator=gen, dtype=DT)
    queue = F.normalize(torch.randn(k, dim, generator=gen, dtype=DT), dim=1)
    return q, key, queue


# ------------------------------------------------------------------------------------------
# moco_loss


def _moco_loop(q, k, queue, tau, extra=None):
    """-log softmax of the positive over [positive, queue, extras], one query at a time."""
    zq, zk, zn = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    losses = []
    for i in range(zq.shape[0]):
        pos = zq[i] @ zk[i] / tau
        terms = [torch.exp(pos)] + [torch.exp(zq[i] @ n / tau) for n in zn]
        if extra is not None:
            terms += [torch.exp(zq[i] @ F.normalize(h, dim=0) / tau) for h in extra[i]]
        losses.append(torch.log(sum(terms)) - pos)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("with_extra", [False, True])
def test_moco_loss_loop_reference_values_and_gradients(with_extra: bool) -> None:
    q, k, queue = _data(0)
    gen = torch.Generator().manual_seed(1)
    extra = torch.randn(4, 3, 5, generator=gen, dtype=DT) if with_extra else None
    qr, kr = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    ref = _moco_loop(qr, kr, queue, 0.2, extra)
    q2, k2 = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
    got = moco_loss(q2, k2, queue, temperature=0.2, extra_negatives=extra)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for x, y in zip(
        torch.autograd.grad(got, (q2, k2)), torch.autograd.grad(ref, (qr, kr)), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_moco_loss_equals_info_nce_with_batch_negatives_excluded() -> None:
    """info_nce with all rows sharing one id drops in-batch negatives: exactly MoCo."""
    q, k, queue = _data(2)
    q1, q2 = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    ours = moco_loss(q1, k, queue, temperature=0.2, reduction="none")
    core = info_nce(
        q2, k, temperature=0.2, negatives=queue, positive_ids=torch.zeros(4, dtype=torch.long),
        reduction="none",
    )  # fmt: skip
    torch.testing.assert_close(ours, core)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), q1)[0], torch.autograd.grad(core.sum(), q2)[0]
    )
    # Negative control: plain info_nce also uses the other keys as negatives.
    assert not torch.allclose(
        ours, info_nce(q, k, temperature=0.2, negatives=queue, reduction="none")
    )


def test_moco_loss_lightly_memory_bank_parity() -> None:
    """lightly's NTXentLoss with a memory bank: positive = out1 row, negatives = bank only."""
    lightly_loss = load_lightly_loss()
    q, k, queue = _data(3)
    loss_fn = lightly_loss.NTXentLoss(temperature=0.2, memory_bank_size=(12, 5))
    loss_fn.memory_bank.bank = queue.clone()  # (K, d) storage; lightly reads it as negatives
    q1, q2 = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    peer = loss_fn(q1, k)
    ours = moco_loss(q2, k, queue, temperature=0.2)
    torch.testing.assert_close(ours, peer)
    torch.testing.assert_close(torch.autograd.grad(ours, q2)[0], torch.autograd.grad(peer, q1)[0])


def test_moco_tiled_engine_matches_dense() -> None:
    q, k, queue = _data(4, k=37)
    q1, q2 = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    dense = moco_loss(q1, k, queue)
    tiled = moco_loss(q2, k, queue, chunk_size=5)
    torch.testing.assert_close(dense, tiled)
    torch.testing.assert_close(torch.autograd.grad(dense, q1)[0], torch.autograd.grad(tiled, q2)[0])


def test_moco_module_and_reductions() -> None:
    q, k, queue = _data(5)
    none = moco_loss(q, k, queue, reduction="none")
    assert none.shape == (4,)
    torch.testing.assert_close(moco_loss(q, k, queue, reduction="sum"), none.sum())
    torch.testing.assert_close(MoCoLoss()(q, k, queue), none.mean())
    # Only extras (empty queue) is allowed; queue-only and both are, too.
    extra = torch.randn(4, 2, 5, dtype=DT)
    torch.testing.assert_close(
        moco_loss(q, k, queue[:0], extra_negatives=extra), _moco_loop(q, k, queue[:0], 0.2, extra)
    )


def test_moco_half_inputs_return_fp32() -> None:
    q, k, queue = _data(6)
    loss = moco_loss(q.half(), k.half(), queue.half())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(
        loss, moco_loss(q.half().float(), k.half().float(), queue.half().float())
    )


def test_moco_bad_input() -> None:
    q, k, queue = _data(7)
    with pytest.raises(ValueError, match="no negatives"):
        moco_loss(q, k, queue[:0])
    with pytest.raises(ValueError, match="q and k must have the same shape"):
        moco_loss(q, k[:3], queue)
    with pytest.raises(ValueError, match="queue_features must have the embedding dimension of q"):
        moco_loss(q, k, queue[:, :3])
    with pytest.raises(ValueError, match="queue_features must have shape"):
        moco_loss(q, k, queue[0])
    with pytest.raises(ValueError, match="temperature"):
        moco_loss(q, k, queue, temperature=0.0)
    with pytest.raises(ValueError, match="extra_negatives must have shape"):
        moco_loss(q, k, queue, extra_negatives=torch.randn(3, 2, 5, dtype=DT))
    bad = queue.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="queue_features contains NaN"):
        moco_loss(q, k, bad)
    bad_q = q.clone()
    bad_q[0, 0] = float("inf")
    with pytest.raises(ValueError, match="q contains NaN or inf"):
        moco_loss(bad_q, k, queue)
    with pytest.raises(ValueError, match="reduction"):
        MoCoLoss(reduction="avg")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# mochi_negatives


def _mochi_loop(q, queue, n_hard, n_mix, n_query_mix, seed):
    """Per-query loop from the MoCHi procedure, replaying the documented draw order."""
    gen = torch.Generator().manual_seed(seed)
    batch = q.shape[0]
    zq, zn = F.normalize(q, dim=1), F.normalize(queue, dim=1)
    p = torch.randint(n_hard, (batch, n_mix), generator=gen)
    r = torch.randint(n_hard, (batch, n_mix), generator=gen)
    alpha = torch.rand(batch, n_mix, 1, generator=gen, dtype=DT)
    r2 = torch.randint(n_hard, (batch, n_query_mix), generator=gen)
    beta = 0.5 * torch.rand(batch, n_query_mix, 1, generator=gen, dtype=DT)
    out = []
    for i in range(batch):
        scores = [(float(zq[i] @ zn[j]), j) for j in range(zn.shape[0])]
        hard = [zn[j] for _, j in sorted(scores, reverse=True)[:n_hard]]  # this query's own set
        rows = []
        for t in range(n_mix):
            h = alpha[i, t, 0] * hard[p[i, t]] + (1 - alpha[i, t, 0]) * hard[r[i, t]]
            rows.append(h / h.norm())
        for t in range(n_query_mix):
            h = beta[i, t, 0] * zq[i] + (1 - beta[i, t, 0]) * hard[r2[i, t]]
            rows.append(h / h.norm())
        out.append(torch.stack(rows))
    return torch.stack(out), beta


def _mochi_first_query_bug(q, queue, n_hard, n_mix, n_query_mix, seed):
    """The public-code pitfall: indexing the flattened (B*N, d) hard set with ids < N."""
    gen = torch.Generator().manual_seed(seed)
    batch, dim = q.shape
    zq, zn = F.normalize(q, dim=1), F.normalize(queue, dim=1)
    hard = zn[(zq @ zn.T).topk(n_hard, dim=1).indices].reshape(batch * n_hard, dim)
    p = torch.randint(n_hard, (batch, n_mix), generator=gen)
    r = torch.randint(n_hard, (batch, n_mix), generator=gen)
    alpha = torch.rand(batch, n_mix, 1, generator=gen, dtype=DT)
    r2 = torch.randint(n_hard, (batch, n_query_mix), generator=gen)
    beta = 0.5 * torch.rand(batch, n_query_mix, 1, generator=gen, dtype=DT)
    mixed = F.normalize(alpha * hard[p] + (1 - alpha) * hard[r], dim=-1)
    qmix = F.normalize(beta * zq[:, None] + (1 - beta) * hard[r2], dim=-1)
    return torch.cat([mixed, qmix], dim=1)


def test_mochi_loop_reference() -> None:
    q, _, queue = _data(8, batch=5, k=20)
    got = mochi_negatives(
        q, queue, n_hard=6, n_mix=7, n_query_mix=3, generator=torch.Generator().manual_seed(9)
    )
    ref, beta = _mochi_loop(q, queue, 6, 7, 3, seed=9)
    assert got.shape == (5, 10, 5)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(5, 10, dtype=DT))
    assert float(beta.max()) < 0.5  # the negative stays the dominant component


def test_mochi_per_query_indexing_pitfall_is_detected() -> None:
    """A buggy implementation that uses only the first query's hard negatives must differ."""
    q, _, queue = _data(10, batch=6, dim=16, k=40)
    got = mochi_negatives(
        q, queue, n_hard=5, n_mix=8, n_query_mix=4, generator=torch.Generator().manual_seed(11)
    )
    buggy = _mochi_first_query_bug(q, queue, 5, 8, 4, seed=11)
    ref, _ = _mochi_loop(q, queue, 5, 8, 4, seed=11)
    torch.testing.assert_close(got, ref)
    # Same draws, so query 0 agrees; every other query differs.
    torch.testing.assert_close(buggy[0], ref[0])
    for i in range(1, 6):
        assert not torch.allclose(buggy[i], ref[i])
    # Property check independent of the draws: query i's negative mixes lie in the span of
    # query i's own hard set (d = 16 > n_hard = 5, so the span is a proper subspace) and the
    # buggy ones of the other queries do not.
    zq, zn = F.normalize(q, dim=1), F.normalize(queue, dim=1)
    for i in range(6):
        hard = zn[(zq[i] @ zn.T).topk(5).indices]  # (5, d)
        for mixes, inside in ((got[i, :8], True), (buggy[i, :8], i == 0)):
            coef = torch.linalg.lstsq(hard.T, mixes.T).solution
            residual = (hard.T @ coef - mixes.T).norm()
            assert (float(residual) < 1e-10) == inside


def test_mochi_negatives_are_detached_and_seeded() -> None:
    q, _, queue = _data(12)
    q = q.clone().requires_grad_(True)
    a = mochi_negatives(
        q, queue, n_hard=4, n_mix=5, n_query_mix=2, generator=torch.Generator().manual_seed(0)
    )
    b = mochi_negatives(
        q, queue, n_hard=4, n_mix=5, n_query_mix=2, generator=torch.Generator().manual_seed(0)
    )
    c = mochi_negatives(
        q, queue, n_hard=4, n_mix=5, n_query_mix=2, generator=torch.Generator().manual_seed(1)
    )
    assert not a.requires_grad
    assert torch.equal(a, b) and not torch.allclose(a, c)  # negative control: other draws
    assert mochi_negatives(q, queue, n_hard=4, n_mix=0, n_query_mix=0).shape == (4, 0, 5)
    assert mochi_negatives(q, queue, n_hard=4, n_mix=0, n_query_mix=3).shape == (4, 3, 5)


def test_mochi_loss_equals_moco_with_synthetic_negatives_and_gradients() -> None:
    """MoCHiLoss = moco_loss(extra=mochi_negatives); synthetic negatives carry no gradient."""
    q, k, queue = _data(13, k=16)
    q1, q2 = q.clone().requires_grad_(True), q.clone().requires_grad_(True)
    got = MoCHiLoss(n_hard=6, n_mix=5, n_query_mix=3, temperature=0.2)(
        q1, k, queue, generator=torch.Generator().manual_seed(4)
    )
    extra, _ = _mochi_loop(q, queue, 6, 5, 3, seed=4)  # built from a detached q: constants
    ref = _moco_loop(q2, k, queue, 0.2, extra)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(torch.autograd.grad(got, q1)[0], torch.autograd.grad(ref, q2)[0])
    # Negative control: the hard mixes raise the loss over plain MoCo (harder negatives).
    assert float(got.detach()) > float(moco_loss(q, k, queue)) + 1e-3


def test_mochi_loss_small_queue_uses_all_rows() -> None:
    q, k, queue = _data(14, k=3)
    got = MoCHiLoss(n_hard=8, n_mix=4, n_query_mix=2)(
        q, k, queue, generator=torch.Generator().manual_seed(2)
    )
    extra, _ = _mochi_loop(q, queue, 3, 4, 2, seed=2)
    torch.testing.assert_close(got, _moco_loop(q, k, queue, 0.2, extra))


def test_mochi_bad_input() -> None:
    q, _, queue = _data(15)
    with pytest.raises(ValueError, match=r"n_hard must be <= the number of queue rows \(12\)"):
        mochi_negatives(q, queue, n_hard=13, n_mix=2, n_query_mix=2)
    with pytest.raises(ValueError, match="n_hard must be an integer >= 1"):
        mochi_negatives(q, queue, n_hard=0, n_mix=2, n_query_mix=2)
    with pytest.raises(ValueError, match="n_mix must be an integer >= 0"):
        mochi_negatives(q, queue, n_hard=4, n_mix=-1, n_query_mix=2)
    with pytest.raises(ValueError, match="n_query_mix must be an integer >= 0"):
        MoCHiLoss(n_hard=4, n_mix=2, n_query_mix=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue_features must have the embedding dimension of q"):
        mochi_negatives(q, queue[:, :2], n_hard=4, n_mix=2, n_query_mix=2)
    bad = q.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="q contains NaN"):
        mochi_negatives(bad, queue, n_hard=4, n_mix=2, n_query_mix=2)
    with pytest.raises(ValueError, match="temperature"):
        MoCHiLoss(temperature=-1.0)
    assert math.isfinite(float(MoCHiLoss(n_hard=4, n_mix=2, n_query_mix=2)(q, q, queue)))
