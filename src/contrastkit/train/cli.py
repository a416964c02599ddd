"""``contrastkit train | recipes | eval``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="contrastkit train",
        description="Train an encoder from a recipe or a TOML config into a run directory.",
    )
    p.add_argument("config", nargs="?", help="a TOML config file (or use --recipe)")
    p.add_argument("--recipe", help="a shipped recipe (see `contrastkit recipes`)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set budget=short --set objective.name=DCLLoss",
    )
    p.add_argument("--out", help="run directory (default: runs/NAME-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume an interrupted run directory")
    p.add_argument(
        "--data-dir", help="Fashion-MNIST folder (else $CONTRASTKIT_FMNIST_DIR or Debian's)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main_train(argv: list[str]) -> int:
    """Entry point of ``contrastkit train``."""
    args = _train_parser().parse_args(argv)
    from contrastkit.data.fashion_mnist import DataNotFoundError

    try:
        if args.resume:
            run_dir = Path(args.resume)
            cfg_path = run_dir / "config.toml"
            if not cfg_path.is_file():
                raise ConfigError(f"--resume: {run_dir} has no config.toml (not a run directory)")
            cfg = config_mod.resolve(config_mod.load_toml(cfg_path))
        else:
            if bool(args.recipe) == bool(args.config):
                raise ConfigError("give either a CONFIG.toml or --recipe NAME (not both)")
            raw = config_mod.load_toml(
                config_mod.recipe_path(args.recipe) if args.recipe else args.config
            )
            overrides = config_mod.parse_overrides(args.overrides)
            if args.data_dir:
                overrides["data.root"] = args.data_dir
            if args.no_progress:
                overrides["train.progress"] = False
            cfg = config_mod.resolve(raw, overrides)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            suffix = f"-{cfg['budget']}" if cfg["budget"] else ""
            run_dir = (
                Path(args.out) if args.out else Path("runs") / f"{cfg['name']}{suffix}-{stamp}"
            )
        from contrastkit.train.trainer import Trainer

        print(f"run directory: {run_dir}", file=sys.stderr)
        Trainer(cfg, run_dir, resume=bool(args.resume)).fit()
    except (ConfigError, DataNotFoundError, ModuleNotFoundError) as err:
        print(f"contrastkit train: error: {err}", file=sys.stderr)
        return 2
    print(f"\nrun directory: {run_dir} (report.md, results.json, plots/)")
    return 0


def main_recipes(argv: list[str]) -> int:
    """Entry point of ``contrastkit recipes``: list the shipped recipes."""
    p = argparse.ArgumentParser(prog="contrastkit recipes", description="List the shipped recipes.")
    p.add_argument("--show", metavar="NAME", help="print one recipe's TOML")
    args = p.parse_args(argv)
    if args.show:
        try:
            print(config_mod.recipe_path(args.show).read_text())
        except ConfigError as err:
            print(f"contrastkit recipes: error: {err}", file=sys.stderr)
            return 2
        return 0
    recipes = config_mod.list_recipes()
    width = max((len(n) for n in recipes), default=0)
    for name, description in recipes.items():
        print(f"{name:<{width}}  {description}")
    return 0


def main_eval(argv: list[str]) -> int:
    """Entry point of ``contrastkit eval RUN_DIR``: re-evaluate a run's checkpoint."""
    p = argparse.ArgumentParser(
        prog="contrastkit eval", description="Re-evaluate a run directory's checkpoint."
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--checkpoint",
        default="",
        help="checkpoint file (default: checkpoints/final.pt, else last.pt)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override evaluation keys, e.g. --set eval.knn_k=20",
    )
    args = p.parse_args(argv)
    from contrastkit.data.fashion_mnist import DataNotFoundError

    run = Path(args.run_dir)
    try:
        if not (run / "config.toml").is_file():
            raise ConfigError(f"run_dir: {run} has no config.toml (not a run directory)")
        overrides = config_mod.parse_overrides(args.overrides)
        bad = [k for k in overrides if not k.startswith(("eval.", "data.eval_", "data.root"))]
        if bad:
            raise ConfigError(f"{bad[0]}: only eval.* and data.eval_* keys can be overridden here")
        cfg = config_mod.resolve(config_mod.load_toml(run / "config.toml"), overrides)
        path = Path(args.checkpoint) if args.checkpoint else run / "checkpoints" / "final.pt"
        if not args.checkpoint and not path.is_file():
            path = run / "checkpoints" / "last.pt"
        if not path.is_file():
            raise ConfigError(f"--checkpoint: {path} does not exist")
        results = evaluate_checkpoint(cfg, path)
    except (ConfigError, DataNotFoundError, ModuleNotFoundError) as err:
        print(f"contrastkit eval: error: {err}", file=sys.stderr)
        return 2
    from contrastkit.train.report import format_table

    out = run / "eval.json"
    results["checkpoint"] = str(path)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"\nwritten: {out}")
    return 0


def evaluate_checkpoint(cfg: dict[str, object], path: Path) -> dict[str, object]:
    """Rebuild the model of ``cfg``, load ``path`` and evaluate it like the trainer does."""
    import torch

    from contrastkit.train import checkpoint as ckpt
    from contrastkit.train.report import evaluate_model
    from contrastkit.train.trainer import build_datasets, build_model, class_texts

    _, bank, test = build_datasets(cfg)
    model = build_model(cfg)
    init_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(ckpt.load(path)["model"])
    text_emb = None
    if cfg["objective"]["pairing"] == "text" or cfg["eval"]["zero_shot"]:  # type: ignore[index]
        from contrastkit.data.text import embed_texts

        text_emb = embed_texts(class_texts(cfg))
    with torch.no_grad():
        return evaluate_model(cfg, model, init_state, bank, test, text_emb)
