"""gather_distributed on real torch.distributed (gloo, several processes) vs one process.

Convention under test: every rank computes the mean loss of its own rows against the global
batch; DDP averages gradients over ranks. Then the loss averaged over ranks, and each rank's
gradient divided by the world size, equal the single-process loss on the global batch and its
gradient (checked against a float64 loop reference). A plain all_gather (no gradient through
the other ranks' rows) is the negative control: it must give different gradients.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _dist_workers import loss_and_grads, mismatched_shapes, supcon_batch, supcon_loss_and_grads

import contrastkit as ck
from contrastkit.distributed import all_gather_with_grad, is_distributed

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")


def _reference(a, b, tau, symmetric):
    """Float64 loop reference of the global-batch InfoNCE / CLIP loss (mean over rows)."""
    n = a.shape[0]
    za = [a[i] / a[i].norm() for i in range(n)]
    zb = [b[i] / b[i].norm() for i in range(n)]
    total = 0.0
    for i in range(n):
        fwd = -(za[i] @ zb[i]) / tau + torch.logsumexp(
            torch.stack([(za[i] @ zb[j]) / tau for j in range(n)]), 0
        )
        if symmetric:
            back = -(zb[i] @ za[i]) / tau + torch.logsumexp(
                torch.stack([(zb[i] @ za[j]) / tau for j in range(n)]), 0
            )
            fwd = 0.5 * (fwd + back)
        total = total + fwd
    return total / n


def _run(tmp_path, fn, world, *args):
    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(fn, args=(world, str(tmp_path / "store"), str(out), *args), nprocs=world, join=True)
    return out


def _global(case, world):
    g = torch.Generator().manual_seed(case["seed"])
    n, d = case["rows_per_rank"] * world, case["dim"]
    a = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(n, d, generator=g, dtype=torch.float64).requires_grad_(True)
    log_t = torch.tensor(case["log_temperature"], dtype=torch.float64, requires_grad=True)
    loss = _reference(a, b, log_t.exp(), case["symmetric"])
    loss.backward()
    return loss.detach(), a.grad, b.grad, log_t.grad


def _case(symmetric, chunk_size, gather="with_grad"):
    return {
        "seed": 3,
        "rows_per_rank": 4,
        "dim": 5,
        "log_temperature": math.log(0.3),
        "symmetric": symmetric,
        "chunk_size": chunk_size,
        "gather": gather,
    }


def _rank_results(out, world):
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]


@pytest.mark.parametrize(
    ("world", "symmetric", "chunk_size"), [(2, True, None), (3, True, 3), (2, False, 2)]
)
def test_gathered_loss_and_gradients_equal_the_global_batch(tmp_path, world, symmetric, chunk_size):
    case = _case(symmetric, chunk_size)
    ranks = _rank_results(_run(tmp_path, loss_and_grads, world, case), world)
    loss, grad_a, grad_b, grad_t = _global(case, world)
    n = case["rows_per_rank"]
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), loss)
    for rank, r in enumerate(ranks):
        rows = slice(rank * n, (rank + 1) * n)
        torch.testing.assert_close(r["a"] / world, grad_a[rows])
        torch.testing.assert_close(r["b"] / world, grad_b[rows])
    torch.testing.assert_close(torch.stack([r["log_t"] for r in ranks]).mean(), grad_t)


def _siglip_reference(a, b, tau, bias):
    """Float64 loop: -(1/N) Σ_i Σ_j log σ(y_ij (<â_i, b̂_j>/τ + bias)), y = +1 iff i = j."""
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            x = (a[i] / a[i].norm()) @ (b[j] / b[j].norm()) / tau + bias
            total = total - torch.nn.functional.logsigmoid(x if i == j else -x)
    return total / n


@pytest.mark.parametrize(("world", "chunk_size"), [(2, None), (3, 5)])
def test_gathered_siglip_equals_the_global_batch(tmp_path, world, chunk_size):
    case = {**_case(True, chunk_size), "loss": "siglip"}
    ranks = _rank_results(_run(tmp_path, loss_and_grads, world, case), world)
    g = torch.Generator().manual_seed(case["seed"])
    n = case["rows_per_rank"] * world
    a = torch.randn(n, case["dim"], generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(n, case["dim"], generator=g, dtype=torch.float64).requires_grad_(True)
    log_t = torch.tensor(case["log_temperature"], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    loss = _siglip_reference(a, b, log_t.exp(), bias)
    loss.backward()
    rows_per_rank = case["rows_per_rank"]
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), loss.detach())
    for rank, r in enumerate(ranks):
        rows = slice(rank * rows_per_rank, (rank + 1) * rows_per_rank)
        torch.testing.assert_close(r["a"] / world, a.grad[rows])
        torch.testing.assert_close(r["b"] / world, b.grad[rows])
    torch.testing.assert_close(torch.stack([r["log_t"] for r in ranks]).mean(), log_t.grad)
    torch.testing.assert_close(torch.stack([r["bias"] for r in ranks]).mean(), bias.grad)


def _supcon_reference(emb, labels, tau, contrast_mode):
    """Float64 loop of L_sup_out on the global batch (mean over anchors with a positive)."""
    n, views = emb.shape[:2]
    z = [emb[i, v] / emb[i, v].norm() for v in range(views) for i in range(n)]  # views-major
    lab = [int(labels[i]) if labels is not None else i for v in range(views) for i in range(n)]
    anchors = range(len(z)) if contrast_mode == "all" else range(n)
    losses = []
    for i in anchors:
        others = [k for k in range(len(z)) if k != i]
        pos = [p for p in others if lab[p] == lab[i]]
        if not pos:
            continue
        lse = torch.logsumexp(torch.stack([z[i] @ z[k] / tau for k in others]), 0)
        losses.append(-sum(z[i] @ z[p] / tau - lse for p in pos) / len(pos))
    return torch.stack(losses).mean()


_SUPCON_CASES = [
    # two views, shared classes
    (
        2,
        {
            "views": 2,
            "labels": [0, 1, 2, 0, 1, 2, 0, 1],
            "contrast_mode": "all",
            "chunk_size": None,
        },
    ),
    # one view: some anchors have no positive, and ranks count different numbers of them
    (
        3,
        {
            "views": 1,
            "labels": [5, 6, 7, 0, 0, 1, 1, 2, 2, 0, 3, 4],
            "contrast_mode": "all",
            "chunk_size": 3,
        },
    ),
    # no labels (SimCLR positives = other views), view 0 as anchors
    (2, {"views": 2, "labels": None, "contrast_mode": "one", "chunk_size": 2}),
]


@pytest.mark.parametrize(("world", "extra"), _SUPCON_CASES)
def test_gathered_supcon_equals_the_global_batch(tmp_path, world, extra):
    case = {"seed": 5, "rows_per_rank": 4, "dim": 6, "log_temperature": math.log(0.4), **extra}
    ranks = _rank_results(_run(tmp_path, supcon_loss_and_grads, world, case), world)
    emb_all, labels_all = supcon_batch(case, world)
    emb = emb_all.clone().requires_grad_(True)
    log_t = torch.tensor(case["log_temperature"], dtype=torch.float64, requires_grad=True)
    loss = _supcon_reference(emb, labels_all, log_t.exp(), case["contrast_mode"])
    loss.backward()
    n = case["rows_per_rank"]
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), loss.detach())
    torch.testing.assert_close(torch.stack([r["module_loss"] for r in ranks]).mean(), loss.detach())
    for rank, r in enumerate(ranks):
        torch.testing.assert_close(r["emb"] / world, emb.grad[rank * n : (rank + 1) * n])
    torch.testing.assert_close(torch.stack([r["log_t"] for r in ranks]).mean(), log_t.grad)


def test_plain_all_gather_gives_wrong_gradients(tmp_path):
    """Negative control: the same loss with constants for the other ranks' rows."""
    world, case = 2, _case(True, None, gather="no_grad")
    ranks = _rank_results(_run(tmp_path, loss_and_grads, world, case), world)
    loss, grad_a, _, _ = _global(case, world)
    torch.testing.assert_close(torch.stack([r["loss"] for r in ranks]).mean(), loss)  # same value
    assert not torch.allclose(ranks[0]["a"] / world, grad_a[:4])  # ... wrong gradient


def test_mismatched_batch_sizes_raise_a_clear_error(tmp_path):
    out = _run(tmp_path, mismatched_shapes, 2)
    for rank in range(2):
        message = (out / f"rank{rank}.txt").read_text()
        assert "same shape" in message and "(4, 3)" in message and "(5, 3)" in message


def test_single_process_is_a_no_op():
    assert not is_distributed()
    x = torch.randn(3, 2)
    assert all_gather_with_grad(x) is x
    a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    for symmetric in (False, True):
        torch.testing.assert_close(
            ck.info_nce(a, b, symmetric=symmetric, gather_distributed=True),
            ck.info_nce(a, b, symmetric=symmetric),
        )
    torch.testing.assert_close(ck.CLIPLoss(gather_distributed=True)(a, b), ck.CLIPLoss()(a, b))
    torch.testing.assert_close(
        ck.siglip(a, b, gather_distributed=True, chunk_size=4), ck.siglip(a, b)
    )


def test_gather_with_negatives_or_ids_is_rejected():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="gather_distributed"):
        ck.info_nce(a, b, negatives=torch.randn(2, 3), gather_distributed=True)
    with pytest.raises(ValueError, match="gather_distributed"):
        ck.clip_loss(a, b, positive_ids=torch.arange(4), gather_distributed=True)
