"""Why the hard contrastive loss collapses at the paper's α on in-batch negatives.

Two measurements (Fashion-MNIST, simclr-fmnist recipe, 2 epochs of 5 120 images, one seed):

1. **Training runs** of ``HardContrastiveLoss`` over τ × α × batch size: the final loss against
   its collapse value ``ln(K + 1)`` (``K = ceil(α · (B - 1))``), projection uniformity (≈ 0 when
   every embedding is the same point), tolerance, kNN / linear-probe accuracy.
2. **The loss landscape**: on the projections of encoders that did *not* collapse (the α = 1 run,
   i.e. InfoNCE, and the α = 0.5 run), the hard loss for several ``K`` against ``ln(K + 1)``. A
   positive margin means the collapsed state has the lower loss: the objective itself prefers
   collapse, whatever the optimiser does.

Finished runs are reused (delete ``--out`` to retrain). Writes
``benchmarks/results/hard_negatives_collapse.{md,json}``::

    OMP_NUM_THREADS=1 python benchmarks/hard_negatives_collapse.py
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# (τ, α, batch size): the paper's α, α = 0.25, the default α = 0.5 and InfoNCE (α = 1)
GRID = [
    *((tau, alpha, 256) for tau in (0.7, 0.3) for alpha in (0.0819, 0.25, 0.5, 1.0)),
    (0.3, 0.0819, 64),
    (0.3, 0.25, 64),
    (0.3, 0.5, 64),
    (0.3, 0.0819, 512),
    (0.3, 0.25, 512),
]
COMMON = [
    "--recipe=simclr-fmnist",
    "--set=objective.name=HardContrastiveLoss",
    "--set=train.epochs=2",
    "--set=data.eval_train_subset=2000",
    "--set=data.eval_test_subset=1000",
    "--set=eval.probe_max_iter=100",
    "--set=eval.baselines=false",
    "--set=train.threads=1",
    "--no-progress",
]


def run_name(tau: float, alpha: float, batch: int) -> str:
    return f"t{tau}_a{alpha}" + ("" if batch == 256 else f"_bs{batch}")


def train(out: Path, tau: float, alpha: float, batch: int) -> dict[str, Any]:
    run = out / run_name(tau, alpha, batch)
    if not (run / "results.json").exists():
        subset = 10240 if batch == 512 else 5120  # 512: 10 steps per epoch on 5 120 images
        args = [
            *COMMON,
            f"--set=objective.params={{temperature={tau}, alpha={alpha}}}",
            f"--set=train.batch_size={batch}",
            f"--set=data.train_subset={subset}",
            f"--out={run}",
        ]
        subprocess.run(
            [sys.executable, "-m", "contrastkit.cli", "train", *args],
            check=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
    results = json.loads((run / "results.json").read_text())
    with (run / "epochs.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    k = max(1, math.ceil(alpha * (batch - 1)))
    return {
        "temperature": tau,
        "alpha": alpha,
        "batch_size": batch,
        "num_hard": k,
        "final_loss": results["final_loss"],
        "collapse_value": math.log(k + 1),
        "uniformity": float(last["uniformity"]),
        "uniformity_backbone": float(last["uniformity_backbone"]),
        "tolerance": float(last["tolerance"]),
        "knn_acc": results["rows"][0]["knn_acc"],
        "linear_probe_acc": results["rows"][0]["linear_probe_acc"],
    }


@torch.no_grad()
def margins(run: Path, batches: int = 4) -> list[dict[str, Any]]:
    """Hard loss of a trained encoder's projections minus ``ln(K + 1)``, on training batches."""
    from contrastkit.losses.hard_contrastive import hard_contrastive_loss
    from contrastkit.train import checkpoint as ckpt
    from contrastkit.train import config as config_mod
    from contrastkit.train.trainer import Trainer, epoch_permutation

    cfg = config_mod.resolve(config_mod.load_toml(run / "config.toml"))
    trainer = Trainer(cfg, tempfile.mkdtemp())
    trainer.model.load_state_dict(ckpt.load(run / "checkpoints" / "final.pt")["model"])
    trainer.model.eval()
    perm = epoch_permutation(len(trainer.train_set), 0, 0)
    losses: dict[tuple[float, int], list[float]] = {}
    for s in range(batches):
        batch = trainer.train_set.batch(perm[s * 256 : (s + 1) * 256])
        a, b = (trainer.model.embed(v) for v in trainer.augment(batch.inputs, 0, s, 2))
        for tau in (0.7, 0.3):
            for k in (21, 64, 128, 255):
                loss = hard_contrastive_loss(a, b, temperature=tau, num_hard=k)
                losses.setdefault((tau, k), []).append(float(loss))
    return [
        {
            "encoder": run.name,
            "temperature": tau,
            "num_hard": k,
            "hard_loss": sum(v) / len(v),
            "collapse_value": math.log(k + 1),
            "margin": sum(v) / len(v) - math.log(k + 1),
        }
        for (tau, k), v in losses.items()
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/hard-collapse", help="folder of the training runs")
    args = p.parse_args()
    out = Path(args.out)
    runs = [train(out, *point) for point in GRID]
    landscape = [row for name in ("t0.7_a1.0", "t0.3_a0.5") for row in margins(out / name)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hard_negatives_collapse.json").write_text(
        json.dumps({"runs": runs, "landscape": landscape}, indent=1) + "\n"
    )
    lines = [
        "| τ | α | batch | K | final loss | ln(K+1) | uniformity (proj.) | uniformity (backbone) "
        "| tolerance | kNN | probe |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['temperature']} | {r['alpha']} | {r['batch_size']} | {r['num_hard']} "
            f"| {r['final_loss']:.3f} | {r['collapse_value']:.3f} | {r['uniformity']:.3f} "
            f"| {r['uniformity_backbone']:.3f} | {r['tolerance']:.3f} | {r['knn_acc']:.3f} "
            f"| {r['linear_probe_acc']:.3f} |"
        )
    lines += ["", "| encoder | τ | K | hard loss | ln(K+1) | margin |", "|---|---|---|---|---|---|"]
    for r in landscape:
        lines.append(
            f"| {r['encoder']} | {r['temperature']} | {r['num_hard']} | {r['hard_loss']:.3f} "
            f"| {r['collapse_value']:.3f} | {r['margin']:+.3f} |"
        )
    (RESULTS / "hard_negatives_collapse.md").write_text(
        "# Hard contrastive loss: collapse at the paper's α (generated tables)\n\n"
        "Command: `OMP_NUM_THREADS=1 python benchmarks/hard_negatives_collapse.py`; "
        "see the script's docstring and study_hard_negatives.md.\n\n" + "\n".join(lines) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
