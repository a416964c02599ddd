"""Trainer overhead: images/s of `contrastkit train` vs a plain PyTorch loop, same work.

Both loops train the same SmallCNN + projection head with the same kornia augmentation (two views
per image), the same objective and the same AdamW optimizer on the same Fashion-MNIST batches.
The trainer run includes everything it does per step (LR schedule, metrics.jsonl logging, tqdm
progress bar, atomic checkpoints every `checkpoint_every` steps, forked-RNG view seeding); the
final evaluation is excluded (it is not part of training). Runs alternate (plain, trainer, plain,
...) so that a shared machine's load hits both alike; the median of the repeats is reported.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_overhead.py --steps 60 --repeats 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

import torch

from contrastkit.data.augment import AugmentConfig, build_augmentation
from contrastkit.train import config as C
from contrastkit.train.trainer import Trainer, build, epoch_permutation

RESULTS = Path(__file__).resolve().parent / "results"


def plain_loop(cfg: dict, steps: int) -> float:
    """A hand-written loop doing the same work; returns images/s."""
    setup = build(cfg)
    train = setup.train_set
    model = torch.nn.Sequential(setup.model.backbone, setup.model.head)
    aug_cfg = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in cfg["augment"].items()
        if not k.startswith("vector_")
    }
    aug = build_augmentation(AugmentConfig(**aug_cfg))
    loss_fn = setup.model.objectives["main"]
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg["optim"]["lr"], weight_decay=cfg["optim"]["weight_decay"]
    )
    bs = cfg["train"]["batch_size"]
    perm = epoch_permutation(len(train), cfg["seed"], 0)
    model.train()
    start = time.perf_counter()
    for s in range(steps):
        images = train.batch(perm[s * bs : (s + 1) * bs]).inputs
        z = model(torch.cat([aug(images), aug(images)]))
        a, b = z.chunk(2)
        loss = loss_fn(a, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * bs / (time.perf_counter() - start)


def trainer_loop(cfg: dict, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, Path(tmp) / "run")
        # train only: run the loop, skip the final evaluation (patched out below)
        import contrastkit.train.report as report

        saved = report.write_outputs
        t.evaluate = lambda: {}  # type: ignore[method-assign]
        report.write_outputs = lambda *a, **k: None  # type: ignore[assignment]
        try:
            with redirect_stderr(io.StringIO()):
                t.fit()
        finally:
            report.write_outputs = saved
        return t.global_step * cfg["train"]["batch_size"] / t.loop_wall_s


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--objective", default="InfoNCELoss")
    args = p.parse_args()
    cfg = C.resolve(
        C.load_toml(C.recipe_path("simclr-fmnist")),
        {
            "objective.name": args.objective,
            "train.max_steps": args.steps,
            "train.checkpoint_every": 20,  # more often than the recipe (200): a worst case
            "eval.epoch_knn": False,
            "eval.epoch_geometry": False,
            "train.progress": True,
        },
    )
    plain_loop(cfg, 3)  # warm-up (allocator, oneDNN kernels)
    plain, trainer = [], []
    for _ in range(args.repeats):
        plain.append(plain_loop(cfg, args.steps))
        trainer.append(trainer_loop(cfg, args.steps))
        print(f"plain {plain[-1]:.0f} img/s   trainer {trainer[-1]:.0f} img/s", flush=True)
    mp, mt = statistics.median(plain), statistics.median(trainer)
    out = {
        "steps": args.steps,
        "batch_size": cfg["train"]["batch_size"],
        "objective": args.objective,
        "repeats": args.repeats,
        "plain_images_per_s": plain,
        "trainer_images_per_s": trainer,
        "median_plain": mp,
        "median_trainer": mt,
        "trainer_slowdown_pct": 100.0 * (mp - mt) / mp,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg_end": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_overhead.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        "# Trainer overhead: `contrastkit train` vs a plain PyTorch loop",
        "",
        f"Same SmallCNN, kornia augmentation (2 views), `{args.objective}`, AdamW, batch "
        f"{out['batch_size']}, {args.steps} steps per run, {args.repeats} alternating repeats, "
        f"{out['threads']} torch threads on {out['cpu_count']} cores (load average at the end: "
        f"{', '.join(f'{x:.1f}' for x in out['load_avg_end'])}). The trainer run includes logging, "
        "the tqdm bar, the LR schedule and an atomic checkpoint every 20 steps.",
        "",
        "| run | plain loop (img/s) | contrastkit train (img/s) |",
        "|---|---:|---:|",
    ]
    md += [
        f"| {i + 1} | {a:.0f} | {b:.0f} |"
        for i, (a, b) in enumerate(zip(plain, trainer, strict=True))
    ]
    md += [
        f"| **median** | **{mp:.0f}** | **{mt:.0f}** |",
        "",
        f"Trainer slowdown: **{out['trainer_slowdown_pct']:.1f} %** "
        "(target ≤ 5 %; negative = faster).",
        "",
        "Command: `OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_overhead.py "
        f"--steps {args.steps} --repeats {args.repeats}`",
    ]
    (RESULTS / "train_overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
