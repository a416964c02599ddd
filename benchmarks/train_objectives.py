"""simclr-fmnist per objective: kNN and linear-probe accuracy, with wall time.

Each objective trains the same SmallCNN with the same augmentation, optimizer, seed and budget
(the recipe's, or `--budget`), then is evaluated on the Fashion-MNIST test set by weighted kNN
(k=200, T=0.1) and a linear probe (logistic regression on standardised frozen features), next to
the raw-pixel and random-init-encoder baselines computed the same way.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_objectives.py                # full budget
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_objectives.py --budget short
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from contrastkit.train import config as C
from contrastkit.train.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = ["InfoNCELoss", "DCLLoss", "DCLWLoss"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--objectives", nargs="+", default=DEFAULT)
    p.add_argument("--budget", default="", help="recipe budget ('' = full)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--runs", default="runs/bench-objectives")
    p.add_argument("--tag", default="", help="suffix of the results files")
    p.add_argument("--merge", nargs="+", default=[], help="merge the results of these tags")
    p.add_argument("--note", default="", help="a sentence appended to the markdown")
    args = p.parse_args()
    rows, baselines, meta = [], None, {}
    threads = torch.get_num_threads()
    for tag in args.merge:
        part = json.loads((RESULTS / f"train_objectives_{tag}.json").read_text())
        threads = part["threads"]
        rows += part["rows"]
        baselines = part["baselines"]
        meta = {
            k: part[k]
            for k in ("budget", "epochs", "batch_size", "eval_train_subset", "probe_max_iter")
        }
    for name in [] if args.merge else args.objectives:
        overrides = {"budget": args.budget, "objective.name": name, "train.progress": False}
        overrides.update(C.parse_overrides(args.overrides))
        if name == "DCLWLoss":
            overrides.setdefault("objective.params", {"temperature": 0.1, "sigma": 0.5})
        elif name != "InfoNCELoss":
            overrides.setdefault("objective.params", {"temperature": 0.1})
        cfg = C.resolve(C.load_toml(C.recipe_path("simclr-fmnist")), overrides)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = Trainer(
            cfg,
            Path(args.runs) / f"{name}{('-' + args.budget) if args.budget else ''}",
            overwrite=True,
        ).fit()
        wall = time.perf_counter() - t0
        trained = res["rows"][0]
        baselines = res["rows"][1:]
        rows.append(
            {
                "objective": name,
                "params": cfg["objectives"]["main"]["params"],
                "knn_acc": trained["knn_acc"],
                "linear_probe_acc": trained["linear_probe_acc"],
                "train_time_s": res["loop_wall_s"],
                "wall_s": wall,
                "images_per_s": res["loop_images_per_s"],
                "steps": res["steps"],
                "final_loss": res["final_loss"],
                "load_avg_start": load0,
                "load_avg_end": os.getloadavg()[0],
            }
        )
        meta = {
            "budget": args.budget or "full",
            "epochs": res["epochs"],
            "batch_size": cfg["train"]["batch_size"],
            "eval_train_subset": cfg["data"]["eval_train_subset"] or 60000,
            "probe_max_iter": cfg["eval"]["probe_max_iter"],
        }
        print(json.dumps(rows[-1]), flush=True)
    out = {
        "recipe": "simclr-fmnist",
        **meta,
        "rows": rows,
        "baselines": baselines,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "note": args.note,
    }
    tag = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"train_objectives{tag}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        f"# simclr-fmnist per objective ({meta['budget']} budget)",
        "",
        f"{meta['epochs']:.0f} epochs of Fashion-MNIST train (60 000 images), "
        f"batch {meta['batch_size']}, SmallCNN (width 32), AdamW, seed 0; evaluation on the "
        f"10 000 test images with a bank / probe-training set of {meta['eval_train_subset']} "
        "train images (weighted kNN k=200 T=0.1; logistic-regression probe, "
        f"{meta['probe_max_iter']} L-BFGS iterations). "
        f"{out['threads']} torch threads on {out['cpu_count']} shared cores (the load average "
        "column shows how busy the machine was, so the times are upper bounds).",
        "",
        "| objective | params | kNN acc | linear-probe acc | train time (s) | images/s "
        "| load avg |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['objective']} | `{r['params']}` | {r['knn_acc']:.4f} "
            f"| {r['linear_probe_acc']:.4f} | {r['train_time_s']:.0f} | {r['images_per_s']:.0f} "
            f"| {r['load_avg_start']:.1f}–{r['load_avg_end']:.1f} |"
        )
    for b in baselines or []:
        md.append(
            f"| *{b['encoder']}* (baseline) | | {b['knn_acc']:.4f} "
            f"| {b['linear_probe_acc']:.4f} | | | |"
        )
    if args.note:
        md += ["", args.note]
    (RESULTS / f"train_objectives{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
