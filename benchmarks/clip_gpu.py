"""Softmax-family losses on a GPU: exactness, time and peak memory against dense PyTorch.

1. Exactness: values and gradients of clip_loss, info_nce, nt_xent, siglip and supcon in fp32 on
   the GPU (dense and tiled paths) against the same functions in float64 on the CPU.
2. Scale: clip_loss forward + backward at B = 16k, 64k, 128k (d = 512, fp32) against the dense
   computation of open_clip's ClipLoss (B × B logits, two cross-entropies), which is skipped
   where its logits would not fit.

Needs a CUDA device:

    python benchmarks/clip_gpu.py     # writes benchmarks/results/clip_gpu.{json,md}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import contrastkit as ck

RESULTS = Path(__file__).resolve().parent / "results"


def _value_and_grads(fn: Callable[..., torch.Tensor], *xs: torch.Tensor, **kw: Any) -> list:
    leaves = [x.detach().clone().requires_grad_(True) for x in xs]
    loss = fn(*leaves, **kw)
    loss.backward()
    return [loss.detach()] + [x.grad for x in leaves]


def _rel_err(got: list, ref: list) -> float:
    return max(
        float((g.double().cpu() - r).abs().max() / r.abs().max().clamp_min(1e-12))
        for g, r in zip(got, ref, strict=True)
    )


def exactness() -> dict[str, float]:
    """Max relative error (value and gradients) of fp32 GPU against float64 CPU."""
    torch.manual_seed(0)
    out = {}
    cases = [
        ("clip_loss", ck.clip_loss, {"temperature": 0.07}),
        ("info_nce", ck.info_nce, {"temperature": 0.1, "symmetric": True}),
        ("nt_xent", ck.nt_xent, {"temperature": 0.5}),
        ("siglip", ck.siglip, {"temperature": 0.1, "bias": -10.0}),
    ]
    for name, fn, kw in cases:
        a = torch.randn(1000, 64, dtype=torch.float64)
        b = torch.randn(1000, 64, dtype=torch.float64)
        ref = _value_and_grads(fn, a, b, **kw)
        for chunk in (None, 128, 333):
            got = _value_and_grads(fn, a.float().cuda(), b.float().cuda(), chunk_size=chunk, **kw)
            out[f"{name}, chunk_size={chunk}"] = _rel_err(got, ref)
    views, labels = torch.randn(800, 2, 32, dtype=torch.float64), torch.randint(0, 10, (800,))
    ref = _value_and_grads(ck.supcon, views, labels=labels, temperature=0.1)
    for chunk in (None, 256):
        got = _value_and_grads(
            ck.supcon, views.float().cuda(), labels=labels.cuda(), temperature=0.1, chunk_size=chunk
        )
        out[f"supcon, chunk_size={chunk}"] = _rel_err(got, ref)
    return out


def _measure(step: Callable[[], None], repeats: int = 3) -> tuple[float, float]:
    step()  # warm-up
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats, (torch.cuda.max_memory_allocated() - base) / 2**20


def _scale_one(n: int, d: int, free_bytes: int) -> dict[str, Any]:
    a = torch.randn(n, d, device="cuda", requires_grad=True)
    b = torch.randn(n, d, device="cuda", requires_grad=True)
    target = torch.arange(n, device="cuda")

    def ours() -> None:
        ck.clip_loss(a, b, temperature=0.07, check_values=False).backward()

    def dense() -> None:
        logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / 0.07
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        loss.backward()

    t, mem = _measure(ours)
    row: dict[str, Any] = {"B": n, "d": d, "contrastkit_s": t, "contrastkit_MiB": mem}
    if 5 * n * n * 4 < 0.8 * free_bytes:  # the dense peak holds about 5 B×B fp32 buffers
        a.grad = b.grad = None
        row["dense_s"], row["dense_MiB"] = _measure(dense)
    return row


def scale(sizes: tuple[int, ...] = (16384, 65536, 131072), d: int = 512) -> list[dict[str, Any]]:
    """Seconds per forward + backward and peak extra MiB, contrastkit vs dense PyTorch."""
    rows = []
    for n in sizes:
        rows.append(_scale_one(n, d, torch.cuda.mem_get_info()[0]))
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("clip_gpu.py needs a CUDA device")
    errors, rows = exactness(), scale()
    device = torch.cuda.get_device_name()
    RESULTS.mkdir(exist_ok=True)
    payload = {"device": device, "torch": torch.__version__, "exactness": errors, "scale": rows}
    (RESULTS / "clip_gpu.json").write_text(json.dumps(payload, indent=1) + "\n")
    write_markdown(payload)


def write_markdown(payload: dict[str, Any]) -> None:
    """``results/clip_gpu.md`` from the JSON payload."""
    device, errors, rows = payload["device"], payload["exactness"], payload["scale"]
    md = [
        f"# Softmax-family losses on a GPU ({device}, torch {payload['torch']}, fp32)",
        "",
        "## Exactness: fp32 on the GPU vs float64 on the CPU (max relative error, value + grads)",
        "",
        "| loss | max rel. error |",
        "|---|---:|",
        *[f"| {k} | {v:.1e} |" for k, v in errors.items()],
        "",
        "## clip_loss forward + backward vs dense PyTorch (open_clip's computation)",
        "",
        "| B | d | contrastkit s | contrastkit peak extra MiB | dense s | dense peak extra MiB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        dense = (
            f"{r['dense_s']:.3f} | {r['dense_MiB']:.0f}"
            if "dense_s" in r
            else f"skipped: needs ~{5 * r['B'] ** 2 * 4 / 2**30:.0f} GiB (5 B×B buffers) | –"
        )
        md.append(
            f"| {r['B']} | {r['d']} | {r['contrastkit_s']:.3f} | {r['contrastkit_MiB']:.0f} "
            f"| {dense} |"
        )
    (RESULTS / "clip_gpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
