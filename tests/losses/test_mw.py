from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses.mw import MWLoss, mw_loss, mw_loss_from_scores

D64 = torch.float64


def ref_mw(scores: torch.Tensor, tau: float | torch.Tensor) -> torch.Tensor:
    """Paper Eq. 3 with loops: every positive against every off-positive entry of the matrix."""
    b, m = scores.shape
    pool = [scores[k, j] for k in range(b) for j in range(m) if j != k]
    total = scores.new_zeros(())
    for i in range(b):
        for s_neg in pool:
            total = total + torch.log1p(torch.exp(-(scores[i, i] - s_neg) / tau))
    return total / b


def _data(b: int = 4, h: int = 2, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=D64, requires_grad=True)
    p = torch.randn(b * (1 + h), d, generator=g, dtype=D64, requires_grad=True)
    return q, p


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 7])
@pytest.mark.parametrize("tau", [0.5, 0.05])
def test_matches_loop_reference_values_and_gradients(chunk_size: int | None, tau: float) -> None:
    q, p = _data()
    ours = mw_loss(q, p, temperature=tau, chunk_size=chunk_size)
    ref = ref_mw(F.normalize(q, dim=1) @ F.normalize(p, dim=1).t(), tau)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-10)
    g_ours = torch.autograd.grad(ours, (q, p))
    g_ref = torch.autograd.grad(ref, (q, p))
    for x, y in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-10)


def test_learnable_temperature_gets_the_reference_gradient() -> None:
    q, p = _data(b=3, h=1, seed=1)
    tau1 = torch.tensor(0.3, dtype=D64, requires_grad=True)
    tau2 = torch.tensor(0.3, dtype=D64, requires_grad=True)
    scores = F.normalize(q, dim=1) @ F.normalize(p, dim=1).t()
    ours = mw_loss_from_scores(scores, temperature=tau1, chunk_size=2)
    ref = ref_mw(scores, tau2)
    (g1,) = torch.autograd.grad(ours, tau1)
    (g2,) = torch.autograd.grad(ref, tau2)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def test_closed_forms() -> None:
    # B = 1, M = 2: one pair -> softplus((s_neg - s_pos)/tau).
    s = torch.tensor([[0.8, 0.2]], dtype=D64)
    assert mw_loss_from_scores(s, temperature=0.1).item() == pytest.approx(
        math.log1p(math.exp(-6.0)), rel=1e-12
    )
    # All scores equal: every term is log 2; |S-| = B*M - B terms per query.
    b, m = 3, 7
    flat = torch.zeros(b, m, dtype=D64)
    assert mw_loss_from_scores(flat, temperature=0.01).item() == pytest.approx(
        (b * m - b) * math.log(2), rel=1e-12
    )
    # B = 2, M = 2: pool = {s01, s10}, each positive meets both.
    s = torch.tensor([[1.0, 0.5], [0.0, 0.3]], dtype=D64)
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731
    expected = (sp(0.5 - 1.0) + sp(0.0 - 1.0) + sp(0.5 - 0.3) + sp(0.0 - 0.3)) / 2
    assert mw_loss_from_scores(s, temperature=1.0).item() == pytest.approx(expected, rel=1e-12)


def test_global_pool_breaks_per_query_shift_invariance() -> None:
    # InfoNCE is invariant to adding c_i to row i; MW compares across queries and is not.
    s = torch.randn(4, 8, dtype=D64)
    shift = torch.tensor([[0.0], [1.0], [-2.0], [0.5]], dtype=D64)
    ce = lambda x: F.cross_entropy(x / 0.1, torch.arange(4))  # noqa: E731
    torch.testing.assert_close(ce(s), ce(s + shift))
    assert (
        abs(
            mw_loss_from_scores(s, temperature=0.1).item()
            - mw_loss_from_scores(s + shift, temperature=0.1).item()
        )
        > 1e-3
    )
    # ...but a global shift of every score changes nothing.
    torch.testing.assert_close(
        mw_loss_from_scores(s, temperature=0.1), mw_loss_from_scores(s + 3.0, temperature=0.1)
    )


def test_bounds_the_number_of_misordered_pairs() -> None:
    for seed in range(3):
        s = torch.randn(5, 15, generator=torch.Generator().manual_seed(seed), dtype=D64)
        b, m = s.shape
        mask = torch.ones(b, m, dtype=torch.bool)
        mask[:, :b] &= ~torch.eye(b, dtype=torch.bool)
        neg = s[mask]
        misordered = (s.diagonal()[:, None] <= neg[None, :]).sum().item()
        assert misordered <= b * mw_loss_from_scores(s, temperature=0.05).item() / math.log(2)


def test_reduction_module_and_half_precision() -> None:
    q, p = _data()
    per = mw_loss(q, p, temperature=0.1, reduction="none")
    assert per.shape == (4,)
    torch.testing.assert_close(per.mean(), mw_loss(q, p, temperature=0.1))
    torch.testing.assert_close(per.sum(), mw_loss(q, p, temperature=0.1, reduction="sum"))
    torch.testing.assert_close(
        MWLoss(temperature=0.1, chunk_size=2)(q, p), mw_loss(q, p, temperature=0.1)
    )
    out = mw_loss(q.detach().half(), p.detach().half(), temperature=0.1)
    assert out.dtype == torch.float32
    ref = mw_loss(q.detach().half().double(), p.detach().half().double(), temperature=0.1)
    assert abs(out.item() - ref.item()) < 1e-3 * abs(ref.item())


def test_negative_control_other_negatives_change_gradient() -> None:
    q, p = _data(seed=2)
    p2 = p.detach().clone()
    p2[-1] += 1.0  # move one hard negative (belonging to another query)
    g1 = torch.autograd.grad(mw_loss(q, p, temperature=0.1), q)[0]
    g2 = torch.autograd.grad(mw_loss(q, p2, temperature=0.1), q)[0]
    # every query sees every negative: all rows of the gradient change
    assert ((g1 - g2).abs().sum(dim=1) > 1e-8).all()


def test_bad_inputs_raise_value_error_naming_argument() -> None:
    q, p = _data()
    with pytest.raises(ValueError, match="temperature"):
        mw_loss(q, p, temperature=0.0)
    with pytest.raises(ValueError, match="temperature must be a number or a one-element"):
        mw_loss(q, p, temperature=torch.ones(4, dtype=D64))
    with pytest.raises(ValueError, match="b must hold at least one passage per query"):
        mw_loss(q, p[:2])
    with pytest.raises(ValueError, match="embedding dimension of a"):
        mw_loss(q, p[:, :3])
    with pytest.raises(ValueError, match="no negative"):
        mw_loss_from_scores(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="chunk_size"):
        MWLoss(chunk_size=0)
    with pytest.raises(ValueError, match="reduction"):
        MWLoss(reduction="mean_pairs")
    bad = q.detach().clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="a contains NaN"):
        mw_loss(bad, p)
    with pytest.raises(ValueError, match="scores contains NaN"):
        mw_loss_from_scores(bad @ p.detach().t())
