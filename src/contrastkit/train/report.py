"""A run's outputs: ``results.json``, plots and ``report.md``, and the summary table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contrastkit.train.log import read_records


def format_table(results: Mapping[str, Any]) -> str:
    """The summary table: one row per encoder (trained, random-init, raw inputs), then zero-shot."""
    lines = [f"{'encoder':<40} {'kNN acc':>8} {'linear-probe acc':>17}", "-" * 67]
    for row in results["rows"]:
        probe = row.get("linear_probe_acc")
        probe_s = f"{probe:.4f}" if probe is not None else "-"
        lines.append(f"{row['encoder']:<40} {row['knn_acc']:>8.4f} {probe_s:>17}")
    if results.get("note"):
        lines.append(results["note"])
    zs = results.get("zero_shot")
    if zs:
        lines.append("")
        lines.append(f"zero-shot, all classes compete:  {zs['all_way']:.4f}")
        if zs.get("unseen_classes"):
            seen = f"zero-shot, seen {zs['seen_classes']} among themselves"
            lines.append(f"{seen}:  {zs['seen_way']:.4f}")
            unseen = f"zero-shot, unseen {zs['unseen_classes']} among themselves"
            lines.append(f"{unseen}:  {zs['unseen_way']:.4f}")
            lines.append(
                f"generalized zero-shot (all compete): seen {zs['generalized_seen']:.4f}, "
                f"unseen {zs['generalized_unseen']:.4f}, harmonic mean {zs['generalized_h']:.4f}"
            )
            if "generalized_ausuc" in zs:
                lines.append(
                    f"generalized zero-shot, area under the seen-unseen curve (AUSUC): "
                    f"{zs['generalized_ausuc']:.4f}"
                )
    return "\n".join(lines)


_SERIES = (
    ("loss", "step", ("loss",), "loss"),
    ("temperature", "step", ("temperature",), "temperature"),
    ("metrics", "epoch", ("knn_acc",), "kNN accuracy (subset)"),
    ("geometry", "epoch", ("uniformity", "tolerance", "alignment"), "geometry (projection)"),
)


def _plot(run_dir: Path, records: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    made = []
    for name, kind, keys, ylabel in _SERIES:
        recs = [r for r in records if r["kind"] == kind]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        drawn = False
        for key in keys:
            pts = [(r["step"], r[key]) for r in recs if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="." if kind == "epoch" else None, label=key)
                drawn = True
        # per-term losses of a several-objective run
        if name == "loss":
            terms = sorted({k for r in recs for k in r if k.startswith("loss/")})
            for key in terms if len(terms) > 1 else []:
                ax.plot([r["step"] for r in recs], [r[key] for r in recs], lw=0.8, label=key)
        if not drawn:
            ax.text(
                0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center", transform=ax.transAxes
            )
        elif len(keys) > 1 or name == "loss" and len(ax.lines) > 1:
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots / f"{name}.png", dpi=100)
        plt.close(fig)
        made.append(f"plots/{name}.png")
    return made


def write_outputs(
    run_dir: str | os.PathLike[str], cfg: Mapping[str, Any], results: dict[str, Any]
) -> None:
    """Write results.json, the plots and report.md, and print the summary table."""
    run = Path(run_dir)
    tmp = run / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, run / "results.json")
    plots = _plot(run, read_records(run))
    table = format_table(results)
    terms = ", ".join(
        f"`{n}`: {t['weight']:g} × {t['name']} {t['params'] or ''}".rstrip()
        for n, t in cfg["objectives"].items()
    )
    lines = [
        f"# Run report: {cfg['name']}",
        "",
        f"{cfg.get('description', '')}".strip(),
        "",
        f"- objectives: {terms}",
        f"- data: {cfg['data']['format']} ({results['train_rows']} training rows)",
        f"- budget: `{cfg['budget'] or 'default'}`, {results['steps']} steps "
        f"({results['epochs']:.2f} epochs), batch {cfg['train']['batch_size']}, "
        f"seed {cfg['seed']}, "
        f"{results['world_size']} process(es), {cfg['train']['precision']}",
        f"- training time: {results['loop_wall_s']:.1f} s "
        f"({results['loop_images_per_s']:.0f} rows/s)",
        f"- final loss: {results['final_loss']}, final temperature: {results['final_temperature']}",
        "",
        "```",
        table,
        "```",
        "",
    ]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    (run / "report.md").write_text("\n".join(lines) + "\n")
    print(table)
