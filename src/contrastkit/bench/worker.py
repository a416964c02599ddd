"""One benchmark configuration, run in a fresh process: prints one JSON line.

``python -m contrastkit.bench.worker IMPL B D REPS`` times forward + backward of the symmetric
CLIP/InfoNCE loss of ``IMPL`` on ``(B, D)`` float32 inputs and reports the median time and the
peak resident memory above the process's footprint just before the first step.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]
TEMPERATURE = 0.07


def _contrastkit() -> LossFn:
    import contrastkit

    return lambda a, b: contrastkit.clip_loss(a, b, temperature=TEMPERATURE)


def _naive_dense() -> LossFn:
    def loss(a: Tensor, b: Tensor) -> Tensor:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        logits = a @ b.T / TEMPERATURE
        labels = torch.arange(a.shape[0])
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))

    return loss


def _open_clip() -> LossFn:
    from contrastkit.bench.peers import import_peer

    clip_loss = import_peer("open-clip-torch").ClipLoss()
    scale = torch.tensor(1.0 / TEMPERATURE)
    return lambda a, b: clip_loss(F.normalize(a, dim=-1), F.normalize(b, dim=-1), scale)


def _info_nce_pytorch() -> LossFn:
    from contrastkit.bench.peers import import_peer

    info_nce = import_peer("info-nce-pytorch").InfoNCE(temperature=TEMPERATURE)
    return lambda a, b: 0.5 * (info_nce(a, b) + info_nce(b, a))


IMPLEMENTATIONS: dict[str, Callable[[], LossFn]] = {
    "contrastkit": _contrastkit,
    "naive-dense": _naive_dense,
    "open_clip": _open_clip,
    "info-nce-pytorch": _info_nce_pytorch,
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


#: Fast configurations repeat until their timed steps add up to this many seconds (median of
#: many steps instead of 3 noisy millisecond readings), at most ``_MAX_STEPS`` steps.
_MIN_TIMED_S = 1.0
_MAX_STEPS = 300


def run(impl: str, batch: int, dim: int, reps: int) -> dict[str, object]:
    """Time at least ``reps`` forward+backward steps after warm-up; report median and peak memory.

    Steps continue until they add up to ``_MIN_TIMED_S`` (so sub-millisecond configurations are
    timed over hundreds of steps); the first step warms up allocators and kernels.
    """
    torch.set_num_threads(2)
    loss_fn = IMPLEMENTATIONS[impl]()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(batch, dim, generator=g).requires_grad_()
    b = torch.randn(batch, dim, generator=g).requires_grad_()
    baseline = _rss_bytes()
    times: list[float] = []
    step = 0
    while len(times) < reps or (sum(times) < _MIN_TIMED_S and len(times) < _MAX_STEPS):
        start = time.perf_counter()
        loss = loss_fn(a, b)
        loss.backward()  # type: ignore[no-untyped-call]
        elapsed = time.perf_counter() - start
        a.grad = b.grad = None
        if step > 0:  # the first step warms up allocators and kernels
            times.append(elapsed)
        step += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "impl": impl,
        "B": batch,
        "d": dim,
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_extra_mib": max(0, peak - baseline) / 2**20,
        "loss": loss.item(),
    }


def matmul_gflops(size: int = 2048, reps: int = 5) -> float:
    """This machine's float32 matmul throughput on 2 threads (median of ``reps``)."""
    torch.set_num_threads(2)
    x, y = torch.randn(size, size), torch.randn(size, size)
    x @ y
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        x @ y
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main(argv: list[str]) -> int:
    """Entry point: ``IMPL B D REPS`` or ``matmul``."""
    if argv[0] == "matmul":
        print(json.dumps({"matmul_gflops": matmul_gflops()}))
        return 0
    impl, batch, dim, reps = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    print(json.dumps(run(impl, batch, dim, reps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
