"""Class-incremental study: COCONUT's terms against replay and its bounds.

On Split-Fashion-MNIST (default), or with ``--data wordnet`` on WordNet noun glosses classified by
lexicographer file (frozen MiniLM features, an MLP, each synset's own words as its text; build
the data first with ``benchmarks/wordnet_lexfile.py``).

Regenerate ``benchmarks/results/continual_fmnist.{md,json,png}`` with::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/continual_fmnist.py

Stage 1 (``validation``) chooses each contrastive term's weight and temperature (and the
distillation weight) on a validation split held out of the training split (seed 0), by final
average accuracy of the classifier head. Stage 2 (``test``) trains every method with those values
on ``--seeds`` seeds and measures on the test split. Every method has the same budget (steps,
batch, new-task rows); a seed fixes the initialisation, the sample order and the class order
(``continual.order_seed = seed``), shared by all methods, so differences are paired.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from contrastkit.train import config as config_mod
from contrastkit.train.continual import ContinualTrainer, plot_accuracy_curves

RESULTS = Path(__file__).resolve().parent / "results"

# The study's budget: 4 000 new-task rows per task (20 000 in all), 1 epoch per task, batch 64 +
# 32 replayed rows, 200-row buffer (the outside measurement also replayed 200 images).
BUDGET: dict[str, Any] = {
    "data.train_subset": 20000,
    "train.epochs": 1,
    "train.batch_size": 64,
    "train.progress": False,
    "train.threads": 1,
    "train.checkpoint_every": 0,
    "train.log_every": 10,
}
TERMS = ("ce", "nspt", "mm")
# --data wordnet: WordNet noun glosses (frozen MiniLM, 384-d) classified by lexicographer file,
# an MLP encoder, the synset's own words as each row's text (benchmarks/wordnet_lexfile.py).
WORDNET: dict[str, Any] = {
    "data.format": "embeddings",
    "data.paired_key": "text",
    "data.train_subset": 0,
    "model.encoder": "mlp",
    "model.mlp_hidden": [256],
}
KD = "contrastkit.train.continual:FeatureDistillation"


def method_overrides(
    method: str, chosen: dict[str, dict[str, float]]
) -> tuple[dict[str, Any], set[str]]:
    """``(overrides, terms kept)`` of one method; ``chosen``: each term's weight/temperature."""
    if method.endswith(" (herding)"):  # the same method with iCaRL's herding selection
        base, kept = method_overrides(method.removesuffix(" (herding)"), chosen)
        return {**base, "continual.selection": "herding"}, kept
    o: dict[str, Any] = {}
    keep = {"ce"}
    replay = method not in ("finetune", "joint")
    o["continual.buffer_size"] = 200 if replay else 0
    o["continual.joint"] = method == "joint"
    o["continual.teacher"] = False
    if method in ("replay+NSPT", "COCONUT", "replay+NTPT"):
        keep.add("nspt")
        o["continual.teacher"] = True
    if method in ("replay+MM", "COCONUT", "replay+MM(random text)"):
        keep.add("mm")
    if method == "replay+MM(random text)":
        o["continual.random_text"] = True
    if method == "replay+KD":
        keep.add("kd")
        o["continual.teacher"] = True
        o["objectives.kd.name"] = KD
        o["objectives.kd.weight"] = chosen["kd"]["weight"]
    for term in ("nspt", "mm"):
        if term in keep:
            o[f"objectives.{term}.weight"] = chosen[term]["weight"]
            o[f"objectives.{term}.params.temperature"] = chosen[term]["temperature"]
    if method == "replay+NTPT":
        o["objectives.nspt.params.teacher_negatives"] = True
    return o, keep


def run_one(overrides: dict[str, Any], keep: set[str], out: Path) -> dict[str, Any]:
    """Train one config (the recipe's terms not in ``keep`` removed) into ``out``."""
    raw = config_mod.load_toml(config_mod.recipe_path("coconut-fmnist"))
    raw["objectives"] = {k: v for k, v in raw["objectives"].items() if k in keep}
    cfg = config_mod.resolve(raw, {**BUDGET, **overrides})
    t0 = time.perf_counter()
    res = ContinualTrainer(cfg, out, overwrite=True).fit()
    res["wall_s"] = time.perf_counter() - t0
    return res


def validation_stage(work: Path, grid_w: list[float], grid_t: list[float]) -> dict[str, Any]:
    """Choose each term's weight and temperature on the validation split (seed 0)."""
    val = {"data.validation_fraction": 0.1, "seed": 0, "continual.order_seed": 0}
    rows: list[dict[str, Any]] = []
    base, _ = method_overrides("replay", {})
    res = run_one({**base, **val}, {"ce"}, work / "val" / "replay")
    rows.append({"term": "none (replay)", "final_average_accuracy": res["final_average_accuracy"]})
    print(f"[val] replay: {res['final_average_accuracy']:.4f}", file=sys.stderr, flush=True)
    chosen: dict[str, dict[str, float]] = {}
    for term, method in (("nspt", "replay+NSPT"), ("mm", "replay+MM")):
        best: tuple[float, float, float] | None = None
        for w in grid_w:
            for tau in grid_t:
                o, keep = method_overrides(method, {term: {"weight": w, "temperature": tau}})
                res = run_one({**o, **val}, keep, work / "val" / f"{term}-w{w}-t{tau}")
                acc = res["final_average_accuracy"]
                rows.append(
                    {"term": term, "weight": w, "temperature": tau, "final_average_accuracy": acc}
                )
                print(f"[val] {term} w={w} tau={tau}: {acc:.4f}", file=sys.stderr, flush=True)
                if best is None or acc > best[0]:
                    best = (acc, w, tau)
        assert best is not None
        chosen[term] = {"weight": best[1], "temperature": best[2]}
    best_kd: tuple[float, float] | None = None
    for w in grid_w:
        o, keep = method_overrides("replay+KD", {**chosen, "kd": {"weight": w}})
        res = run_one({**o, **val}, keep, work / "val" / f"kd-w{w}")
        acc = res["final_average_accuracy"]
        rows.append({"term": "kd", "weight": w, "final_average_accuracy": acc})
        print(f"[val] kd w={w}: {acc:.4f}", file=sys.stderr, flush=True)
        if best_kd is None or acc > best_kd[0]:
            best_kd = (acc, w)
    assert best_kd is not None
    chosen["kd"] = {"weight": best_kd[1]}
    return {"grid": rows, "chosen": chosen}


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


METRICS = (
    "final_average_accuracy",
    "average_incremental_accuracy",
    "forgetting",
    "backward_transfer",
    "ncm_final_average_accuracy",
    "knn_final_average_accuracy",
    "text_final_average_accuracy",
)


def test_stage(
    work: Path, chosen: dict[str, Any], methods: list[str], seeds: list[int]
) -> dict[str, Any]:
    """Every method on every seed, measured on the test split."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in seeds:
        for method in methods:
            o, keep = method_overrides(method, chosen)
            o.update({"seed": seed, "continual.order_seed": seed})
            res = run_one(o, keep, work / "test" / f"{method}-s{seed}")
            runs.setdefault(method, []).append(res)
            print(
                f"[test] {method} seed {seed}: final {res['final_average_accuracy']:.4f} "
                f"({res['wall_s']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    summary: dict[str, Any] = {}
    for method, rs in runs.items():
        summary[method] = {m: _stats([r[m] for r in rs]) for m in METRICS if m in rs[0]}
        if method != "replay" and "replay" in runs:
            diffs = [
                r["final_average_accuracy"] - b["final_average_accuracy"]
                for r, b in zip(rs, runs["replay"], strict=True)
            ]
            summary[method]["minus_replay"] = _stats(diffs)
    return {"runs": runs, "summary": summary}


def write_page(
    val: dict[str, Any], test: dict[str, Any], seeds: list[int], command: str, name: str
) -> None:
    """benchmarks/results/NAME.json, NAME.png, NAME_tables.md (the verdict is written by hand)."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"budget": BUDGET, "seeds": seeds, "validation": val, "test": test}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    curves = {m: [r["accuracy_matrix"] for r in rs] for m, rs in test["runs"].items()}
    tmp = RESULTS / "_continual_plot"
    plot_accuracy_curves(curves, tmp)
    (tmp / "accuracy.png").replace(RESULTS / f"{name}.png")
    tmp.rmdir()
    lines = [
        "| method | final avg acc | avg incremental acc | forgetting | BWT | NCM final avg acc "
        "| kNN final avg acc | text-classifier final avg acc | final − replay (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, s in test["summary"].items():
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" if m in s else "—" for m in METRICS]
        d = s.get("minus_replay")
        cells.append(f"{d['mean']:+.3f} ± {d['std']:.3f}" if d else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    grid = ["| term | weight | temperature | final avg acc (validation) |", "|---|---|---|---|"]
    for r in val["grid"]:
        grid.append(
            f"| {r['term']} | {r.get('weight', '—')} | {r.get('temperature', '—')} "
            f"| {r['final_average_accuracy']:.4f} |"
        )
    wordnet = name.startswith("continual_wordnet")
    page = "continual_wordnet.md" if wordnet else "continual_fmnist.md"
    target = "study-continual-wordnet" if wordnet else "study-continual"
    (RESULTS / f"{name}_tables.md").write_text(
        f"<!-- generated by `{command}` -->\n\n"
        f"Raw tables of `make {target} ARGS='...'` (the command above). Whether they "
        f"reproduce COCONUT's claim is judged, by hand, on [{page}]({page}).\n\n"
        f"## Test (seeds {seeds})\n\n"
        + "\n".join(lines)
        + f"\n\nChosen on validation: {json.dumps(val['chosen'])}\n\n"
        + "## Validation grid (seed 0)\n\n"
        + "\n".join(grid)
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.1, 0.5])
    p.add_argument("--work", default="runs/continual_fmnist")
    p.add_argument(
        "--methods",
        nargs="+",
        default=[
            "finetune",
            "joint",
            "replay",
            "replay+KD",
            "replay+NSPT",
            "replay+NTPT",
            "replay+MM",
            "replay+MM(random text)",
            "COCONUT",
        ],
    )
    p.add_argument("--chosen", help="skip validation: a JSON file with the chosen values")
    p.add_argument("--epochs", type=int, default=1, help="epochs per task")
    p.add_argument("--name", default="continual_fmnist", help="results file names")
    p.add_argument("--data", choices=("fmnist", "wordnet"), default="fmnist")
    p.add_argument("--wordnet-dir", default="runs/wordnet", help="wordnet_lexfile.py --out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    BUDGET["train.epochs"] = args.epochs
    if args.data == "wordnet":
        BUDGET.update(WORDNET)
        BUDGET["data.path"] = str(Path(args.wordnet_dir) / "train.npz")
        BUDGET["data.test_path"] = str(Path(args.wordnet_dir) / "test.npz")
    work = Path(args.work)
    if args.chosen:
        val = json.loads(Path(args.chosen).read_text())
    else:
        val = validation_stage(work, args.weights, args.temperatures)
        work.mkdir(parents=True, exist_ok=True)
        (work / "validation.json").write_text(json.dumps(val, indent=1))
    test = test_stage(work, val["chosen"], args.methods, args.seeds)
    command = "OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/continual_fmnist.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    write_page(val, test, args.seeds, command.strip(), args.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
