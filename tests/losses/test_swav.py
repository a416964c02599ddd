from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peers import load_lightly_loss

from contrastkit.losses.swav import SwAVLoss, SwAVPrototypes, sinkhorn, swav_loss

D64 = torch.float64


# ----------------------------------------------------------------------------- loop references
def ref_sinkhorn(scores: torch.Tensor, eps: float, iters: int, divide_by_k: bool = True):
    """SwAV's Sinkhorn-Knopp on python lists (float64), optionally without the / K step."""
    b, k = scores.shape
    q = [[math.exp(float(scores[n, c]) / eps) for n in range(b)] for c in range(k)]  # K x B
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iters):
        for c in range(k):
            s = sum(q[c])
            q[c] = [v / s / (k if divide_by_k else 1) for v in q[c]]
        for n in range(b):
            s = sum(q[c][n] for c in range(k))
            for c in range(k):
                q[c][n] = q[c][n] / s / b
    return torch.tensor([[q[c][n] * b for c in range(k)] for n in range(b)], dtype=D64)


def ref_swav(crops, tau, eps, iters, assign, queues=None):
    """Per-sample SwAV loss with explicit loops over assigned crops, predicting crops, classes."""
    v_count, b, k = len(crops), crops[0].shape[0], crops[0].shape[1]
    per = []
    codes = {}
    for a, i in enumerate(assign):
        s = crops[i].detach()
        if queues is not None:
            s = torch.cat((s, queues[a]))
        codes[i] = ref_sinkhorn(s, eps, iters)[:b]
    for n in range(b):
        total = crops[0].new_zeros(())
        for i in assign:
            sub = crops[0].new_zeros(())
            for v in range(v_count):
                if v == i:
                    continue
                logits = [crops[v][n, c] / tau for c in range(k)]
                m = max(float(x.detach()) for x in logits)
                log_z = m + torch.log(sum(torch.exp(x - m) for x in logits))
                sub = sub - sum(codes[i][n, c] * (logits[c] - log_z) for c in range(k))
            total = total + sub / (v_count - 1)
        per.append(total / len(assign))
    return torch.stack(per)


def _crops(v: int, b: int, k: int, seed: int = 0, grad: bool = True) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = [F.normalize(torch.randn(b, 8, dtype=D64, generator=g), dim=1) for _ in range(v)]
    c = F.normalize(torch.randn(k, 8, dtype=D64, generator=g), dim=1)
    return [(x @ c.T).requires_grad_(grad) for x in z]


# ----------------------------------------------------------------------------- sinkhorn
@pytest.mark.parametrize("iters", [1, 3, 10])
def test_sinkhorn_matches_loop_reference(iters: int) -> None:
    (s,) = _crops(1, 6, 4, seed=iters, grad=False)
    torch.testing.assert_close(
        sinkhorn(s, epsilon=0.05, iterations=iters), ref_sinkhorn(s, 0.05, iters)
    )


def test_omitting_the_divide_by_k_step_is_harmless() -> None:
    (s,) = _crops(1, 7, 5, seed=1, grad=False)
    with_k = ref_sinkhorn(s, 0.1, 3, divide_by_k=True)
    without_k = ref_sinkhorn(s, 0.1, 3, divide_by_k=False)
    torch.testing.assert_close(with_k, without_k, rtol=1e-13, atol=1e-15)


def test_sinkhorn_parity_with_lightly() -> None:
    load_lightly_loss()
    from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn

    for seed in range(3):
        (s,) = _crops(1, 9, 6, seed=seed, grad=False)
        torch.testing.assert_close(
            sinkhorn(s, epsilon=0.05, iterations=3),
            lightly_sinkhorn(s, iterations=3, epsilon=0.05),
            rtol=1e-12,
            atol=1e-14,
        )


def test_sinkhorn_properties_detached_rows_sum_to_one_equipartition() -> None:
    (s,) = _crops(1, 12, 3, seed=2)
    q = sinkhorn(s, epsilon=0.5, iterations=200)
    assert not q.requires_grad
    torch.testing.assert_close(q.sum(1), torch.ones(12, dtype=D64))
    torch.testing.assert_close(q.sum(0), torch.full((3,), 4.0, dtype=D64))  # B / K each
    # a wide score range does not under- or overflow (log-domain iterations)
    q = sinkhorn(s * 100, epsilon=0.01)
    assert torch.isfinite(q).all()
    assert torch.allclose(sinkhorn(torch.zeros(4, 5)), torch.full((4, 5), 0.2))  # uniform


# ----------------------------------------------------------------------------- loss
@pytest.mark.parametrize(("v", "assign"), [(2, (0, 1)), (4, (0, 1)), (3, (0,)), (3, (2, 0))])
def test_loss_matches_loop_reference(v: int, assign: tuple[int, ...]) -> None:
    crops = _crops(v, 5, 4, seed=v)
    ref = ref_swav(crops, 0.1, 0.05, 3, assign)
    for reduction, want in (("none", ref), ("mean", ref.mean()), ("sum", ref.sum())):
        got = swav_loss(crops, crops_for_assign=assign, reduction=reduction)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    g1 = torch.autograd.grad(
        swav_loss(crops, crops_for_assign=assign), crops, materialize_grads=True
    )
    g2 = torch.autograd.grad(ref.mean(), crops, materialize_grads=True)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_uniform_scores_closed_form_log_k() -> None:
    crops = [torch.zeros(3, 7, dtype=D64) for _ in range(3)]
    torch.testing.assert_close(swav_loss(crops), torch.tensor(math.log(7), dtype=D64))


def test_codes_are_detached_only_predictions_get_gradient() -> None:
    s0, s1 = _crops(2, 6, 5, seed=3)
    loss = swav_loss([s0, s1], crops_for_assign=(0,))
    g0, g1 = torch.autograd.grad(loss, [s0, s1], materialize_grads=True)
    assert torch.count_nonzero(g0) == 0
    assert torch.count_nonzero(g1) > 0


def test_queue_matches_loop_reference() -> None:
    crops = _crops(3, 4, 5, seed=4)
    queues = [q.detach() for q in _crops(2, 6, 5, seed=5)]
    ref = ref_swav(crops, 0.1, 0.05, 3, (0, 1), queues)
    got = swav_loss(crops, queue_scores=queues, reduction="none")
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(got, swav_loss(crops, reduction="none"))  # the queue matters


@pytest.mark.parametrize(
    ("n_high", "n_low", "use_queue"), [(2, 0, False), (2, 4, False), (3, 1, True)]
)
def test_parity_with_lightly_swav_loss(n_high: int, n_low: int, use_queue: bool) -> None:
    lightly_loss = load_lightly_loss()
    crops = _crops(n_high + n_low, 6, 5, seed=10 + n_low)
    queues = [q.detach() for q in _crops(n_high, 8, 5, seed=99)] if use_queue else None
    peer = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
    ref = peer(crops[:n_high], crops[n_high:], queues)  # shape (1,)
    got = swav_loss(crops, crops_for_assign=tuple(range(n_high)), queue_scores=queues)
    torch.testing.assert_close(got, ref.squeeze(0), rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(got, crops)
    g2 = torch.autograd.grad(ref.sum(), crops)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_negative_control_shuffled_samples_change_value_and_gradient() -> None:
    s0, s1 = _crops(2, 6, 5, seed=6)
    base = swav_loss([s0, s1])
    (ga,) = torch.autograd.grad(base, s1)
    other = swav_loss([s0, s1[[1, 0, 2, 3, 4, 5]]])
    (gb,) = torch.autograd.grad(other, s1)
    assert not torch.allclose(base, other)
    assert not torch.allclose(ga, gb)


def test_tensor_input_module_and_prototypes() -> None:
    crops = [c.detach() for c in _crops(4, 5, 6, seed=7)]
    stacked = torch.stack(crops)
    torch.testing.assert_close(swav_loss(stacked), swav_loss(crops))
    crit = SwAVLoss(temperature=0.2, crops_for_assign=(1, 2), reduction="sum")
    torch.testing.assert_close(
        crit(crops), swav_loss(crops, temperature=0.2, crops_for_assign=(1, 2), reduction="sum")
    )
    protos = SwAVPrototypes(dim=8, num_prototypes=6)
    torch.testing.assert_close(protos.weight.norm(dim=1), torch.ones(6))
    z = torch.randn(5, 8)
    scores = protos(z)
    want = F.normalize(z, dim=1) @ F.normalize(protos.weight, dim=1).T
    torch.testing.assert_close(scores, want)
    assert scores.abs().max() <= 1 + 1e-6
    swav_loss([scores, protos(torch.randn(5, 8))]).backward()
    assert protos.weight.grad is not None and protos.weight.grad.abs().sum() > 0
    with torch.no_grad():
        protos.weight.mul_(3)
    protos.normalize_()
    torch.testing.assert_close(protos.weight.norm(dim=1), torch.ones(6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_accumulates_in_fp32(dtype: torch.dtype) -> None:
    crops = [c.detach() for c in _crops(2, 8, 5, seed=8)]
    got = swav_loss([c.to(dtype) for c in crops])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), swav_loss(crops), rtol=5e-2, atol=5e-2)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_value_error_naming_the_argument() -> None:
    s0, s1 = (c.detach() for c in _crops(2, 4, 3))
    with pytest.raises(ValueError, match="at least 2 crops"):
        swav_loss([s0])
    with pytest.raises(ValueError, match="crop_scores\\[1\\]"):
        swav_loss([s0, s1[:3]])
    with pytest.raises(ValueError, match="crop_scores"):
        swav_loss(torch.randn(4, 3))
    with pytest.raises(ValueError, match="crops_for_assign"):
        swav_loss([s0, s1], crops_for_assign=(0, 2))
    with pytest.raises(ValueError, match="crops_for_assign"):
        swav_loss([s0, s1], crops_for_assign=(1, 1))
    with pytest.raises(ValueError, match="queue_scores"):
        swav_loss([s0, s1], queue_scores=[s0])
    with pytest.raises(ValueError, match="queue_scores\\[0\\]"):
        swav_loss([s0, s1], queue_scores=[torch.randn(4, 5, dtype=D64)] * 2)
    bad = s0.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="crop_scores\\[0\\] contains NaN"):
        swav_loss([bad, s1])
    with pytest.raises(ValueError, match="temperature"):
        swav_loss([s0, s1], temperature=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(s0, epsilon=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        sinkhorn(s0, iterations=0)
    with pytest.raises(ValueError, match="scores"):
        sinkhorn(torch.randn(3))
    with pytest.raises(ValueError, match="reduction"):
        swav_loss([s0, s1], reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sinkhorn_iterations"):
        SwAVLoss(sinkhorn_iterations=0)
    with pytest.raises(ValueError, match="num_prototypes"):
        SwAVPrototypes(dim=8, num_prototypes=0)
