"""Run named variants of shipped recipes side by side and tabulate kNN / linear-probe accuracy.

A spec is a JSON object ``{variant: {key: value, ...}}`` of ``--set`` overrides (``"recipe"``
picks the recipe, default ``simclr-fmnist``). Each variant is one ``contrastkit train`` process;
``--parallel`` of them run at once (on a GPU, several small runs share the card). Baselines are
skipped except where a variant sets ``"eval.baselines": "true"``.

    python benchmarks/sweep_recipe.py benchmarks/sweeps/simclr_augment.json --device cuda \
        --parallel 8 --name simclr_augment_sweep
    python benchmarks/sweep_recipe.py --render summary1.json summary2.json --name NAME
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _result(run_dir: Path, log: Path) -> dict[str, Any]:
    try:
        r = json.loads((run_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {"error": log.read_text()[-2000:] if log.is_file() else "no log"}
    epochs = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"knn_acc"' in line
    ]
    return {
        "rows": r["rows"],
        "epoch_knn": [round(e["knn_acc"], 4) for e in epochs],
        "final_loss": r.get("final_loss"),
        "train_s": r.get("train_time_s"),
    }


def run(spec: dict[str, dict[str, Any]], device: str, parallel: int, runs: Path) -> dict[str, Any]:
    """Train every variant of ``spec`` (``parallel`` at a time) and collect their results."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    pending, running, out = list(spec.items()), {}, {}
    t0 = time.perf_counter()
    runs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < parallel:
            name, sets = pending.pop(0)
            sets = dict(sets)
            recipe = sets.pop("recipe", "simclr-fmnist")
            sets = {"train.device": device, "eval.baselines": "false", **sets}
            args = [sys.executable, "-m", "contrastkit.cli", "train", "--recipe", recipe]
            args += ["--out", str(runs / name), "--no-progress"]
            for key, value in sets.items():
                args += ["--set", f"{key}={value}"]
            with (runs / f"{name}.log").open("w") as log:
                running[name] = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                out[name] = {"overrides": spec[name], **_result(runs / name, runs / f"{name}.log")}
                del running[name]
                print(f"[{time.perf_counter() - t0:.0f} s] {name}: done", flush=True)
        time.sleep(1)
    return out


def render(summary: dict[str, Any], title: str, note: str) -> str:
    """A markdown table of a sweep summary (baselines listed once, from the run that has them)."""
    lines = [f"# {title}", "", note, ""] if note else [f"# {title}", ""]
    lines += [
        "| variant | overrides | kNN acc | linear-probe acc | epoch kNN (subset) | train s |",
        "|---|---|---:|---:|---|---:|",
    ]
    baselines: list[dict[str, Any]] = []
    for name, r in summary.items():
        if "error" in r:
            lines.append(f"| {name} | | error | | | |")
            continue
        trained = r["rows"][0]
        baselines = baselines or r["rows"][1:]
        over = ", ".join(f"{k}={v}" for k, v in r.get("overrides", {}).items())
        curve = " ".join(f"{x:.3f}" for x in r["epoch_knn"])
        lines.append(
            f"| {name} | `{over}` | {trained['knn_acc']:.4f} | {trained['linear_probe_acc']:.4f} "
            f"| {curve} | {r['train_s']:.0f} |"
        )
    for b in baselines:
        lines.append(
            f"| *{b['encoder']}* | | {b['knn_acc']:.4f} | {b['linear_probe_acc']:.4f} | | |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", help="JSON spec of variants")
    p.add_argument("--device", default="cpu")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--runs", default="runs/sweep")
    p.add_argument("--name", default="sweep", help="results/NAME.{md,json}")
    p.add_argument("--note", default="", help="a paragraph under the title")
    p.add_argument("--render", nargs="+", default=[], help="tabulate existing summary JSONs")
    args = p.parse_args()
    if args.render:
        summary: dict[str, Any] = {}
        for path in args.render:
            summary.update(json.loads(Path(path).read_text())["variants"])
    else:
        if not args.spec:
            p.error("give a spec or --render")
        spec = json.loads(Path(args.spec).read_text())
        summary = run(spec, args.device, args.parallel, Path(args.runs))
    RESULTS.mkdir(exist_ok=True)
    payload = {"device": args.device, "note": args.note, "variants": summary}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    md = render(summary, args.name, args.note)
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
