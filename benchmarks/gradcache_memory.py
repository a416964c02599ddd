"""Gradient caching: peak memory and time of one training step, full batch vs grad_cache_step.

The encoder is the trainer's CNN (`SmallCNN` + `projection_head`, two views of
28×28 images through one encoder, InfoNCE, symmetric). Each configuration runs in a fresh
process, after a warm-up step on 256 rows. Memory is the peak of
`torch.cuda.max_memory_allocated` on a GPU, else the growth of the process's peak resident set
(`ru_maxrss`) during the step on a CPU.

    python benchmarks/gradcache_memory.py                 # CPU, writes results/gradcache_memory.*
    python benchmarks/gradcache_memory.py --device cuda --sizes 4096 16384 65536
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def one(device: str, batch: int, chunk: int) -> dict[str, float]:
    """One step in this process: ``chunk = 0`` is the ordinary full-batch backward."""
    import torch

    import contrastkit as ck
    from contrastkit.train.encoder import SmallCNN, projection_head

    torch.manual_seed(0)
    model = torch.nn.Sequential(SmallCNN(width=32, pool="fc"), projection_head(128, 128, 64))
    model = model.to(device)
    views = [torch.rand(batch, 1, 28, 28, device=device) for _ in range(2)]

    def loss_fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ck.info_nce(a, b, temperature=0.1, symmetric=True, check_values=False)

    def step(rows: int) -> None:
        x = [v[:rows] for v in views]
        if chunk == 0:
            loss_fn(model(x[0]), model(x[1])).backward()
        else:
            ck.grad_cache_step([model, model], x, loss_fn, min(chunk, rows))

    step(min(batch, 256))  # warm-up (CUDA context, kernels) at a size that sets no memory peak
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    step(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if device == "cuda":
        mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    return {"seconds": seconds, "peak_MiB": mib}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--one", nargs=3, metavar=("DEVICE", "BATCH", "CHUNK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), int(args.one[2]))))
        return
    rows = []
    for batch in args.sizes:
        row: dict[str, float | int | str] = {"batch": batch, "chunk": args.chunk}
        for name, chunk in (("full", 0), ("gradcache", args.chunk)):
            cmd = [sys.executable, __file__, "--one", args.device, str(batch), str(chunk)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                row[f"{name}_error"] = done.stderr.strip().splitlines()[-1][:200]
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            row[f"{name}_s"], row[f"{name}_MiB"] = result["seconds"], result["peak_MiB"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    name = f"gradcache_memory_{args.device}"
    payload = {"device": args.device, "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    unit = "GPU memory allocated" if args.device == "cuda" else "peak RSS growth"
    md = [
        f"# One training step, full batch vs grad_cache_step ({args.device})",
        "",
        f"Trainer CNN, two 28×28 views per image, symmetric InfoNCE; memory = {unit}.",
        "",
        "| batch | chunk | full s | full MiB | grad cache s | grad cache MiB |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:

        def cell(key: str, fmt: str, row: dict[str, float | int | str] = r) -> str:
            v = row.get(key)
            return format(v, fmt) if isinstance(v, float) else "failed"

        md.append(
            f"| {r['batch']} | {r['chunk']} | {cell('full_s', '.2f')} | {cell('full_MiB', '.0f')} "
            f"| {cell('gradcache_s', '.2f')} | {cell('gradcache_MiB', '.0f')} |"
        )
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
