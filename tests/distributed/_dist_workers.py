"""Worker functions for the multi-process tests (a plain module: spawn must import it by name)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist


def _init(rank: int, world: int, store_file: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)


def _shard(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    n = x.shape[0] // world
    return x[rank * n : (rank + 1) * n].clone()


def loss_and_grads(rank: int, world: int, store_file: str, out_dir: str, case: dict) -> None:
    """Each rank: its shard of the global batch → local loss → backward; save loss and grads.

    ``case["gather"]``: ``"with_grad"`` (the library), or ``"no_grad"`` (a plain all_gather,
    the common bug, as the negative control).
    """
    import contrastkit as ck

    _init(rank, world, store_file)
    try:
        g = torch.Generator().manual_seed(case["seed"])
        n, d = case["rows_per_rank"] * world, case["dim"]
        a_all = torch.randn(n, d, generator=g, dtype=torch.float64)
        b_all = torch.randn(n, d, generator=g, dtype=torch.float64)
        a = _shard(a_all, rank, world).requires_grad_(True)
        b = _shard(b_all, rank, world).requires_grad_(True)
        log_t = torch.tensor(case["log_temperature"], dtype=torch.float64, requires_grad=True)
        kwargs = dict(
            temperature=log_t.exp(),
            symmetric=case["symmetric"],
            chunk_size=case["chunk_size"],
        )
        if case.get("loss") == "siglip":
            bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
            loss = ck.siglip(
                a,
                b,
                temperature=log_t.exp(),
                bias=bias,
                chunk_size=case["chunk_size"],
                gather_distributed=True,
            )
            loss.backward()
            torch.save(
                {
                    "loss": loss.detach(),
                    "a": a.grad,
                    "b": b.grad,
                    "log_t": log_t.grad,
                    "bias": bias.grad,
                },
                Path(out_dir) / f"rank{rank}.pt",
            )
            return
        if case["gather"] == "with_grad":
            loss = ck.info_nce(a, b, gather_distributed=True, **kwargs)
        else:  # the bug: gathered rows are constants
            parts_b = [torch.empty_like(b) for _ in range(world)]
            parts_a = [torch.empty_like(a) for _ in range(world)]
            dist.all_gather(parts_b, b.detach())
            dist.all_gather(parts_a, a.detach())
            parts_b[rank], parts_a[rank] = b, a
            tau = log_t.exp()
            za = torch.nn.functional.normalize(a, dim=1)
            zb = torch.nn.functional.normalize(b, dim=1)
            all_b = torch.nn.functional.normalize(torch.cat(parts_b), dim=1)
            all_a = torch.nn.functional.normalize(torch.cat(parts_a), dim=1)
            pos = (za * zb).sum(1) / tau
            loss = (torch.logsumexp(za @ all_b.T / tau, 1) - pos).mean()
            if case["symmetric"]:
                back = (torch.logsumexp(zb @ all_a.T / tau, 1) - pos).mean()
                loss = 0.5 * (loss + back)
        loss.backward()
        torch.save(
            {"loss": loss.detach(), "a": a.grad, "b": b.grad, "log_t": log_t.grad},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def supcon_loss_and_grads(rank: int, world: int, store_file: str, out_dir: str, case: dict) -> None:
    """Each rank: its shard of a global (N, V, d) batch (and labels) → supcon → grads."""
    import contrastkit as ck

    _init(rank, world, store_file)
    try:
        emb_all, labels_all = supcon_batch(case, world)
        emb = _shard(emb_all, rank, world).requires_grad_(True)
        labels = None if labels_all is None else _shard(labels_all, rank, world)
        log_t = torch.tensor(case["log_temperature"], dtype=torch.float64, requires_grad=True)
        module_loss = ck.SupConLoss(
            temperature=float(log_t.exp()),
            contrast_mode=case["contrast_mode"],
            chunk_size=case["chunk_size"],
            gather_distributed=True,
        )(emb.detach(), labels)
        loss = ck.supcon(
            emb,
            labels,
            temperature=log_t.exp(),
            contrast_mode=case["contrast_mode"],
            chunk_size=case["chunk_size"],
            gather_distributed=True,
        )
        loss.backward()
        torch.save(
            {
                "loss": loss.detach(),
                "module_loss": module_loss,
                "emb": emb.grad,
                "log_t": log_t.grad,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def supcon_batch(case: dict, world: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The global float64 batch of a supcon case: ``(N, V, d)`` embeddings and labels."""
    g = torch.Generator().manual_seed(case["seed"])
    n = case["rows_per_rank"] * world
    emb = torch.randn(n, case["views"], case["dim"], generator=g, dtype=torch.float64)
    labels = case["labels"]
    return emb, None if labels is None else torch.tensor(labels[:n])


def mismatched_shapes(rank: int, world: int, store_file: str, out_dir: str) -> None:
    """Ranks pass different batch sizes: every rank must get the same clear ValueError."""
    from contrastkit.distributed import all_gather_with_grad

    _init(rank, world, store_file)
    try:
        x = torch.randn(4 + rank, 3)
        try:
            all_gather_with_grad(x)
            message = "no error"
        except ValueError as err:
            message = str(err)
        (Path(out_dir) / f"rank{rank}.txt").write_text(message)
    finally:
        dist.destroy_process_group()
