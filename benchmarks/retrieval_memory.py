"""Memory-bounded exact retrieval at 100k queries x 100k candidates.

Runs ``contrastkit.metrics.retrieval_metrics`` on random embeddings and records wall time and peak
resident memory (``ru_maxrss``) in ``benchmarks/results/retrieval_memory.md``. Not a unit test:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/retrieval_memory.py            # 100k x 100k, d=64
    .venv/bin/python benchmarks/retrieval_memory.py --n 20000 --no-write         # quick look

A dense 100k x 100k float32 similarity matrix alone would be 37 GiB; the blocked computation keeps
``chunk_size x m`` similarities (plus masks) alive at a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path

import torch

from contrastkit.metrics import retrieval_metrics


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run(n: int, d: int, chunk_size: int, layout: str, classes: int) -> dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(n, d, generator=gen)
    c = q + 1.5 * torch.randn(n, d, generator=gen)  # noisy views: non-trivial ranks
    kwargs: dict[str, object] = {}
    if layout == "labels":
        kwargs = {
            "query_labels": torch.arange(n) % classes,
            "candidate_labels": torch.arange(n) % classes,
        }
    base = rss_mib()
    peak_before = peak_rss_mib()
    t0 = time.perf_counter()
    res = retrieval_metrics(q, c, ks=(1, 5, 10), chunk_size=chunk_size, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    peak = peak_rss_mib()
    return {
        "n": n,
        "d": d,
        "layout": layout
        if layout == "paired"
        else f"labels ({classes} classes, {n // classes} positives/query)",
        "chunk_size": chunk_size,
        "seconds": elapsed,
        "rss_before_mib": base,
        "peak_rss_mib": peak,
        "peak_before_mib": peak_before,
        "extra_peak_mib": peak - base,
        "metrics": res.as_dict(),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=128)
    p.add_argument("--layout", choices=("paired", "labels"), default="paired")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    r = run(args.n, args.d, args.chunk_size, args.layout, args.classes)
    m = r["metrics"]
    assert isinstance(m, dict)
    lines = [
        "# Exact retrieval at scale: memory and time",
        "",
        "Produced by `benchmarks/retrieval_memory.py` "
        f"(`--n {args.n} --d {args.d} --chunk-size {args.chunk_size} --layout {args.layout}`).",
        "",
        "| queries x candidates | d | layout | chunk_size | wall time | RSS before | peak RSS | "
        "peak - before |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['n']:,} x {r['n']:,} | {r['d']} | {r['layout']} | {r['chunk_size']} | "
        f"{r['seconds']:.1f} s | {r['rss_before_mib']:.0f} MiB | {r['peak_rss_mib']:.0f} MiB | "
        f"{r['extra_peak_mib']:.0f} MiB |",
        "",
        "For comparison, one dense float32 similarity matrix of this size is "
        f"{r['n'] ** 2 * 4 / 2**30:.1f} GiB. "
        "RSS before = the process after importing torch and creating the two embedding tensors; "
        "peak RSS = `ru_maxrss` after the call.",
        "",
        "Metrics (random noisy views, so the values only show the run was complete): "
        + ", ".join(f"{k} = {v:.4f}" for k, v in m.items()),
        "",
        f"Machine: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (shared 2-core machine).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        out = Path(__file__).parent / "results" / "retrieval_memory.md"
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
