"""``contrastkit bench``: symmetric CLIP/InfoNCE forward+backward, contrastkit vs peers.

Each (implementation, B, d) runs in a fresh process (``contrastkit.bench.worker``) so that peak
memory is per configuration. The matmul throughput is measured in the same run, so the roofline
fraction and the speed ratios compare numbers taken on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FULL_BATCHES = (256, 1024, 4096, 8192, 16384, 32768)
FULL_DIMS = (128, 512)
QUICK_BATCHES = (1024, 8192)
QUICK_DIMS = (512,)
IMPLS = ("contrastkit", "naive-dense", "open_clip", "info-nce-pytorch")
DENSE_IMPLS = frozenset({"naive-dense", "open_clip", "info-nce-pytorch"})
PEERS = ("open_clip", "info-nce-pytorch")


@dataclass
class Outcome:
    """One configuration's result, or why it has none."""

    impl: str
    batch: int
    dim: int
    median_s: float | None = None
    peak_extra_mib: float | None = None
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _predicted_dense_gib(batch: int) -> float:
    # A dense symmetric loss keeps ~4 fp32 B×B tensors alive (logits, their transpose's
    # softmax, and the two gradients): open_clip measured 4.2 GiB at B = 16384 here.
    return 4 * batch * batch * 4 / 2**30


def _run_worker(args: list[str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "contrastkit.bench.worker", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timeout > {timeout:.0f} s"
    if proc.returncode != 0:
        if "ModuleNotFoundError" in proc.stderr:  # a peer package is missing
            return None, "not installed: run make peers"
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return None, "failed: " + textwrap.shorten(tail, 120, placeholder=" …")
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


def _fmt_time(x: float | None) -> str:
    if x is None:
        return "—"
    if x < 0.01:
        return f"{x * 1000:.2f} ms"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_mem(x: float | None) -> str:
    return "—" if x is None else (f"{x:.0f} MiB" if x < 1024 else f"{x / 1024:.1f} GiB")


def render(outcomes: list[Outcome], gflops: float, meta: dict[str, Any]) -> str:
    """Markdown: one row per (B, d), one time/memory column pair per implementation."""
    impls = [i for i in IMPLS if any(o.impl == i for o in outcomes)]
    configs = sorted({(o.batch, o.dim) for o in outcomes}, key=lambda c: (c[1], c[0]))
    by_key = {(o.impl, o.batch, o.dim): o for o in outcomes}
    lines = [
        "# contrastkit bench: symmetric CLIP/InfoNCE loss, forward + backward",
        "",
        f"float32, 2 threads, median of the timed steps (at least 3, and at least 1 s of steps), "
        f"each configuration in a fresh "
        f"process. Machine: {meta['machine']}; measured matmul {gflops:.0f} GFLOP/s. "
        f"Roofline = 3 · 2 · B² · d FLOPs ÷ matmul GFLOP/s. "
        f"'vs fastest peer' = contrastkit time ÷ fastest of {', '.join(PEERS)}. "
        f"Memory = peak RSS above the footprint before the first step.",
        "",
        "| B | d | "
        + " | ".join(f"{i} time | {i} mem" for i in impls)
        + " | vs fastest peer | roofline |",
        "|---|---|" + "---|---|" * len(impls) + "---|---|",
    ]
    for batch, dim in configs:
        cells = []
        for impl in impls:
            o = by_key.get((impl, batch, dim))
            if o is None:
                cells += ["—", "—"]
            elif o.median_s is None:
                cells += [o.note, "—"]
            else:
                cells += [_fmt_time(o.median_s), _fmt_mem(o.peak_extra_mib)]
        ours = by_key.get(("contrastkit", batch, dim))
        peer_times = [
            o.median_s
            for p in PEERS
            if (o := by_key.get((p, batch, dim))) is not None and o.median_s is not None
        ]
        ratio = roof = "—"
        if ours is not None and ours.median_s is not None:
            if peer_times:
                ratio = f"{ours.median_s / min(peer_times):.2f}×"
            roof = f"{6 * batch * batch * dim / (gflops * 1e9) / ours.median_s:.0%}"
        lines.append(f"| {batch} | {dim} | " + " | ".join(cells) + f" | {ratio} | {roof} |")
    lines += ["", f"Generated {meta['date']} by `{meta['command']}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Run the benchmark grid and write ``clip_bench[_quick].{md,json}``.

    ``contrastkit bench objectives ...`` runs :mod:`contrastkit.bench.objectives` instead.
    """
    if argv[:1] == ["objectives"]:
        from contrastkit.bench import objectives

        return objectives.main(argv[1:])
    parser = argparse.ArgumentParser(prog="contrastkit bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="B in {1024, 8192}, d = 512")
    parser.add_argument("--batch-sizes", type=int, nargs="+")
    parser.add_argument("--dims", type=int, nargs="+")
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--reps", type=int, default=3, help="timed steps (B ≥ 16384: 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per config")
    parser.add_argument(
        "--max-dense-gib",
        type=float,
        default=8.0,
        help="skip dense implementations predicted to need more memory than this",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    batches = args.batch_sizes or (QUICK_BATCHES if args.quick else FULL_BATCHES)
    dims = args.dims or (QUICK_DIMS if args.quick else FULL_DIMS)

    measured, note = _run_worker(["matmul"], timeout=120)
    if measured is None:
        print(f"contrastkit bench: matmul probe {note}", file=sys.stderr)
        return 1
    gflops = float(measured["matmul_gflops"])
    print(f"matmul: {gflops:.0f} GFLOP/s (2 threads)", file=sys.stderr)

    outcomes: list[Outcome] = []
    grid = [(b, d, i) for d in dims for b in batches for i in args.impls]
    for k, (batch, dim, impl) in enumerate(grid, 1):
        prefix = f"[{k}/{len(grid)}] {impl:<17} B={batch:<6} d={dim:<4}"
        need = _predicted_dense_gib(batch)
        if impl in DENSE_IMPLS and need > args.max_dense_gib:
            note = f"skipped: needs ~{need:.0f} GiB"
            outcomes.append(Outcome(impl, batch, dim, note=note))
            print(f"{prefix} {note}", file=sys.stderr)
            continue
        reps = 1 if batch >= 16384 else args.reps
        start = time.perf_counter()
        result, note = _run_worker([impl, str(batch), str(dim), str(reps)], args.timeout)
        if result is None:
            outcomes.append(Outcome(impl, batch, dim, note=note))
        else:
            outcomes.append(
                Outcome(
                    impl,
                    batch,
                    dim,
                    median_s=float(result["median_s"]),
                    peak_extra_mib=float(result["peak_extra_mib"]),
                    raw=result,
                )
            )
            note = f"{_fmt_time(result['median_s'])}, {_fmt_mem(result['peak_extra_mib'])}"
        print(f"{prefix} {note} ({time.perf_counter() - start:.0f} s wall)", file=sys.stderr)

    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "contrastkit bench " + " ".join(argv),
        "matmul_gflops": gflops,
    }
    name = "clip_bench_quick" if args.quick else "clip_bench"
    args.out.mkdir(parents=True, exist_ok=True)
    table = render(outcomes, gflops, meta)
    (args.out / f"{name}.md").write_text(table)
    payload = {"meta": meta, "results": [o.__dict__ for o in outcomes]}
    (args.out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    print(table)
    print(f"wrote {args.out / name}.md and .json", file=sys.stderr)
    return 0
