"""Final evaluation of a run and its outputs: results.json, plots and a markdown report."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from contrastkit.data.fashion_mnist import CLASS_NAMES, FashionMNIST
from contrastkit.train import evaluation
from contrastkit.train.objectives import current_temperature

if TYPE_CHECKING:
    from contrastkit.train.trainer import Trainer


def _probe_row(
    name: str,
    bank_x: Tensor,
    bank_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    cfg: Mapping[str, Any],
) -> dict[str, Any]:
    e = cfg["eval"]
    t0 = time.perf_counter()
    row: dict[str, Any] = {
        "encoder": name,
        "knn_acc": evaluation.knn_accuracy(
            bank_x, bank_y, test_x, test_y, k=e["knn_k"], temperature=e["knn_temperature"]
        ),
    }
    if e["linear_probe"]:
        row["linear_probe_acc"] = evaluation.linear_probe_accuracy(
            bank_x, bank_y, test_x, test_y, max_iter=e["probe_max_iter"], seed=cfg["seed"]
        )
    row["eval_s"] = time.perf_counter() - t0
    return row


def _baseline_cache_path(
    cfg: Mapping[str, Any], backbone: nn.Module, bank: FashionMNIST, test: FashionMNIST
) -> Path:
    from contrastkit.data.text import cache_dir

    weights = hashlib.sha256()
    for name, tensor in backbone.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())

    key = json.dumps(
        {
            "bank": hashlib.sha256(bank.source_index.numpy().tobytes()).hexdigest(),
            "test": hashlib.sha256(test.source_index.numpy().tobytes()).hexdigest(),
            "backbone": str(backbone),
            "weights": weights.hexdigest(),
            "eval": {
                k: cfg["eval"][k]
                for k in ("knn_k", "knn_temperature", "probe_max_iter", "linear_probe")
            },
            "backends": evaluation.backends(),
            "version": 2,
        },
        sort_keys=True,
    )
    return cache_dir() / "baselines" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".json")


def baselines(
    cfg: Mapping[str, Any], init_backbone: nn.Module, bank: FashionMNIST, test: FashionMNIST
) -> list[dict[str, Any]]:
    """Random-init encoder and raw-pixel rows, evaluated exactly like the trained encoder.

    They do not depend on training, so they are cached on disk (keyed by data, model, seed and
    evaluation settings).
    """
    path = _baseline_cache_path(cfg, init_backbone, bank, test)
    if path.is_file():
        cached: list[dict[str, Any]] = json.loads(path.read_text())
        return cached
    from contrastkit.train.trainer import encode

    rows = [
        _probe_row(
            "random-init encoder",
            encode(init_backbone, bank.float_images()),
            bank.labels,
            encode(init_backbone, test.float_images()),
            test.labels,
            cfg,
        ),
        _probe_row(
            "raw pixels",
            bank.float_images().flatten(1),
            bank.labels,
            test.float_images().flatten(1),
            test.labels,
            cfg,
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)
    return rows


def evaluate_model(
    cfg: Mapping[str, Any],
    model: nn.Module,
    init_state: Mapping[str, Tensor],
    bank: FashionMNIST,
    test: FashionMNIST,
    text_emb: Tensor | None,
) -> dict[str, Any]:
    """KNN / linear probe of the trained backbone (+ baselines) and zero-shot accuracy."""
    from contrastkit.train.trainer import build_model, encode

    device = next(model.parameters()).device
    backbone = model.backbone
    assert isinstance(backbone, nn.Module)
    trained = _probe_row(
        f"trained ({cfg['objective']['name']})",
        encode(backbone, bank.float_images().to(device)).cpu(),
        bank.labels,
        encode(backbone, test.float_images().to(device)).cpu(),
        test.labels,
        cfg,
    )
    rows = [trained]
    if cfg["eval"]["baselines"]:
        init = build_model(cfg)
        init.load_state_dict(dict(init_state))
        rows += baselines(cfg, init.backbone, bank, test)
    out: dict[str, Any] = {"rows": rows, "metrics_backend": evaluation.backends()}
    if text_emb is not None and (cfg["eval"]["zero_shot"] or cfg["objective"]["pairing"] == "text"):
        emb = encode(model, test.float_images().to(device)).cpu()
        seen = list(cfg["data"]["seen_classes"]) or list(range(len(CLASS_NAMES)))
        unseen = [c for c in range(len(CLASS_NAMES)) if c not in seen]
        zs: dict[str, Any] = {
            "seen_classes": seen,
            "unseen_classes": unseen,
            "all_10way": evaluation.zero_shot_accuracy(
                emb, test.labels, text_emb.cpu(), list(range(len(CLASS_NAMES)))
            ),
            "seen_way": evaluation.zero_shot_accuracy(emb, test.labels, text_emb.cpu(), seen),
        }
        if unseen:
            zs["unseen_way"] = evaluation.zero_shot_accuracy(
                emb, test.labels, text_emb.cpu(), unseen
            )
        out["zero_shot"] = zs
    return out


def evaluate_run(trainer: Trainer) -> dict[str, Any]:
    """Evaluate a finished :class:`~contrastkit.train.trainer.Trainer` and summarise the run."""
    cfg = trainer.cfg
    results = evaluate_model(
        cfg, trainer.model, trainer.init_state, trainer.bank, trainer.test_set, trainer.text_emb
    )
    records = read_metrics(trainer.run_dir)
    steps = [r for r in records if r["kind"] == "step"]
    results.update(
        {
            "recipe": cfg["name"],
            "objective": cfg["objective"]["name"],
            "objective_params": cfg["objective"]["params"],
            "budget": cfg["budget"],
            "seed": cfg["seed"],
            "steps": trainer.global_step,
            "epochs": trainer.global_step / trainer.steps_per_epoch,
            "train_images": len(trainer.train_set),
            "train_time_s": trainer.elapsed,
            "images_per_s": trainer.global_step
            * cfg["train"]["batch_size"]
            / max(trainer.elapsed, 1e-9),
            "loop_wall_s": trainer.loop_wall_s,
            "loop_images_per_s": trainer.loop_steps
            * cfg["train"]["batch_size"]
            / max(trainer.loop_wall_s, 1e-9),
            "final_loss": steps[-1]["loss"] if steps else None,
            "final_temperature": current_temperature(trainer.objective.module),
        }
    )
    return results


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_table(results: Mapping[str, Any]) -> str:
    """The summary table: one row per encoder (trained, random-init, raw pixels)."""
    lines = [
        f"{'encoder':<32} {'kNN acc':>8} {'linear-probe acc':>17}",
        "-" * 59,
    ]
    for row in results["rows"]:
        probe = row.get("linear_probe_acc")
        probe_s = f"{probe:.4f}" if probe is not None else "-"
        lines.append(f"{row['encoder']:<32} {row['knn_acc']:>8.4f} {probe_s:>17}")
    zs = results.get("zero_shot")
    if zs:
        lines.append("")
        lines.append(f"zero-shot, all 10 classes (10-way):  {zs['all_10way']:.4f}")
        lines.append(f"zero-shot, seen {zs['seen_classes']}:  {zs['seen_way']:.4f}")
        if "unseen_way" in zs:
            lines.append(f"zero-shot, unseen {zs['unseen_classes']}:  {zs['unseen_way']:.4f}")
    return "\n".join(lines)


def _plot(run_dir: Path, records: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    made = []
    series = [
        ("loss", "loss", steps),
        ("temperature", "temperature", [r for r in steps if r.get("temperature") is not None]),
        ("metrics", "knn_acc", epochs),
    ]
    for name, key, recs in series:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        if recs:
            ax.plot(
                [r["step"] for r in recs],
                [r[key] for r in recs],
                marker="." if name == "metrics" else None,
            )
        else:
            ax.text(
                0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=ax.transAxes
            )
        ax.set_xlabel("step")
        ax.set_ylabel("kNN accuracy (subset)" if name == "metrics" else key)
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
    (run / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plots = _plot(run, read_metrics(run))
    table = format_table(results)
    lines = [
        f"# Run report: {cfg['name']}",
        "",
        f"{cfg.get('description', '')}".strip(),
        "",
        f"- objective: `{cfg['objective']['name']}` {cfg['objective']['params'] or ''}",
        f"- budget: `{cfg['budget'] or 'default'}`, {results['steps']} steps "
        f"({results['epochs']:.2f} epochs over {results['train_images']} images), "
        f"batch {cfg['train']['batch_size']}, seed {cfg['seed']}",
        f"- training time: {results['loop_wall_s']:.1f} s "
        f"({results['loop_images_per_s']:.0f} images/s)",
        f"- final loss: {results['final_loss']}, final temperature: {results['final_temperature']}",
        f"- metric implementations: {results['metrics_backend']}",
        "",
        "```",
        table,
        "```",
        "",
    ]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    (run / "report.md").write_text("\n".join(lines) + "\n")
    print(table)
