"""``contrastkit train | recipes | eval | embed``.

Every expected failure (a bad key, a bad data file, a corrupt checkpoint, a read-only folder, a
diverged run) prints one line naming its cause and exits with status 2 (1 for a diverged run);
no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError


def _show_warnings() -> None:
    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def _guard(prog: str, body: Callable[[], int]) -> int:
    """Run ``body``; expected failures become one line on stderr and an exit status."""
    from contrastkit.data.dataset import DataError
    from contrastkit.train.checkpoint import CheckpointError

    _show_warnings()
    try:
        return body()
    except (ConfigError, DataError, CheckpointError, ModuleNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # TrainingDiverged
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # read-only or full disk, a folder in the way, ...
        where = f" {err.filename}" if err.filename else ""
        print(f"{prog}: error: cannot write or read{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="contrastkit train",
        description="Train an encoder from a recipe or a TOML config into a run directory. "
        "Under torchrun (torchrun --nproc_per_node=N --no-python contrastkit train ...) the "
        "global batch is split among the processes.",
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
        "--overwrite", action="store_true", help="start afresh in an --out that holds a run"
    )
    p.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: accept a config.toml (or --set) that differs from the checkpoint's",
    )
    p.add_argument(
        "--data-dir", help="Fashion-MNIST folder (else $CONTRASTKIT_FMNIST_DIR or Debian's)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main_train(argv: list[str]) -> int:
    """Entry point of ``contrastkit train``."""
    args = _train_parser().parse_args(argv)

    def body() -> int:
        overrides = config_mod.parse_overrides(args.overrides)
        if args.data_dir:
            overrides["data.root"] = args.data_dir
        if args.no_progress:
            overrides["train.progress"] = False
        if args.resume:
            if args.config or args.recipe or args.out:
                raise ConfigError("--resume RUN_DIR takes no CONFIG, --recipe or --out")
            run_dir = Path(args.resume)
            cfg_path = run_dir / "config.toml"
            if not cfg_path.is_file():
                raise ConfigError(f"--resume: {run_dir} has no config.toml (not a run directory)")
            if overrides and not args.allow_config_change:
                raise ConfigError(
                    "--set with --resume changes the run's config: add --allow-config-change"
                )
            cfg = config_mod.resolve(config_mod.load_toml(cfg_path), overrides)
        else:
            if bool(args.recipe) == bool(args.config):
                raise ConfigError("give either a CONFIG.toml or --recipe NAME (not both)")
            raw = config_mod.load_toml(
                config_mod.recipe_path(args.recipe) if args.recipe else args.config
            )
            cfg = config_mod.resolve(raw, overrides)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            suffix = f"-{cfg['budget']}" if cfg["budget"] else ""
            run_dir = (
                Path(args.out) if args.out else Path("runs") / f"{cfg['name']}{suffix}-{stamp}"
            )
        if cfg["continual"]["tasks"] > 0:  # class-incremental: contrastkit.train.continual
            from contrastkit.train.continual import ContinualTrainer

            print(f"run directory: {run_dir}", file=sys.stderr)
            ContinualTrainer(
                cfg,
                run_dir,
                resume=bool(args.resume),
                overwrite=args.overwrite,
                allow_config_change=args.allow_config_change,
            ).fit()
            print(f"\nrun directory: {run_dir} (report.md, results.json, plots/)")
            return 0
        from contrastkit.train.trainer import Trainer

        trainer = Trainer(
            cfg,
            run_dir,
            resume=bool(args.resume),
            overwrite=args.overwrite,
            allow_config_change=args.allow_config_change,
        )
        if trainer.ctx.is_main:
            print(f"run directory: {run_dir}", file=sys.stderr)
        try:
            trainer.fit()
        finally:
            from contrastkit.train.parallel import shutdown

            shutdown(trainer.ctx)
        if trainer.ctx.is_main:
            print(f"\nrun directory: {run_dir} (report.md, results.json, plots/)")
        return 0

    return _guard("contrastkit train", body)


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


def _run_config(run: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    if not (run / "config.toml").is_file():
        raise ConfigError(f"run_dir: {run} has no config.toml (not a run directory)")
    return config_mod.resolve(config_mod.load_toml(run / "config.toml"), overrides)


def _checkpoint(run: Path, given: str) -> Path:
    path = Path(given) if given else run / "checkpoints" / "final.pt"
    if not given and not path.is_file():
        path = run / "checkpoints" / "last.pt"
    if not path.is_file():
        raise ConfigError(f"--checkpoint: {path} does not exist")
    return path


def load_run(cfg: dict[str, Any], path: Path) -> Any:
    """Rebuild a run's data and model from ``cfg`` and load the checkpoint ``path``."""
    from contrastkit.train import checkpoint as ckpt
    from contrastkit.train.trainer import build

    setup = build(cfg)
    init = {k: v.clone() for k, v in setup.model.backbone.state_dict().items()}
    setup.model.load_state_dict(ckpt.load(path)["model"])
    return setup, init


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

    def body() -> int:
        import copy

        import torch

        from contrastkit.train import evaluation
        from contrastkit.train.report import format_table

        run = Path(args.run_dir)
        overrides = config_mod.parse_overrides(args.overrides)
        bad = [k for k in overrides if not k.startswith(("eval.", "data.eval_", "data.root"))]
        if bad:
            raise ConfigError(f"{bad[0]}: only eval.* and data.eval_* keys can be overridden here")
        cfg = _run_config(run, overrides)
        path = _checkpoint(run, args.checkpoint)
        setup, init = load_run(cfg, path)
        init_backbone = copy.deepcopy(setup.model.backbone)
        init_backbone.load_state_dict(init)
        class_emb = None
        if setup.class_text is not None:
            with torch.no_grad():
                setup.model.eval()
                class_emb = (
                    setup.model.embed_text(texts=setup.class_text)
                    if setup.model.text_tower is not None
                    else setup.model.embed_text(setup.class_raw)
                )
        results = evaluation.evaluate_model(
            cfg, setup.model, init_backbone, setup.bank, setup.test_set, class_emb
        )
        out = run / "eval.json"
        results["checkpoint"] = str(path)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(format_table(results))
        print(f"\nwritten: {out}")
        return 0

    return _guard("contrastkit eval", body)


def main_embed(argv: list[str]) -> int:
    """Entry point of ``contrastkit embed RUN_DIR --out emb.npy``."""
    p = argparse.ArgumentParser(
        prog="contrastkit embed",
        description="Write a trained encoder's embeddings (and labels) of a data split as .npy "
        "files that `contrastkit analyze` reads.",
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--out", required=True, help="embeddings file (.npy); labels go to OUT.labels.npy"
    )
    p.add_argument(
        "--split",
        choices=("train", "test", "all"),
        default="test",
        help="which split (default: test)",
    )
    p.add_argument(
        "--data",
        default="",
        help="another file or folder in the run's data format (replaces data.path / data.root)",
    )
    p.add_argument(
        "--projection",
        action="store_true",
        help="the projection head's output instead of the backbone's features",
    )
    p.add_argument("--checkpoint", default="", help="default: checkpoints/final.pt, else last.pt")
    args = p.parse_args(argv)

    def body() -> int:
        import numpy as np
        import torch

        from contrastkit.train import evaluation

        run = Path(args.run_dir)
        overrides: dict[str, Any] = {
            "data.train_subset": 0,
            "data.eval_train_subset": 0,
            "data.eval_test_subset": 0,
        }
        cfg = _run_config(run, {})
        if args.data:
            key = "data.root" if cfg["data"]["format"] == "fashion-mnist" else "data.path"
            overrides[key] = args.data
            overrides["data.test_path"] = ""
        cfg = _run_config(run, overrides)
        setup, _ = load_run(cfg, _checkpoint(run, args.checkpoint))
        parts = {
            "train": [setup.bank],
            "test": [setup.test_set],
            "all": [setup.bank, setup.test_set],
        }
        fn = setup.model.embed if args.projection else setup.model.backbone
        chosen = parts[args.split]
        evaluation.progress(f"embedding {sum(len(d) for d in chosen)} {args.split} rows ...")
        emb = torch.cat([evaluation.encode(fn, d.float_inputs()) for d in chosen])
        labels_list = [d.labels for d in chosen]
        out = Path(args.out)
        if out.suffix != ".npy":
            raise ConfigError(f"--out: expected a .npy path, got {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, emb.numpy())
        written = [str(out)]
        if all(lab is not None for lab in labels_list):
            labels = out.with_name(out.stem + ".labels.npy")
            np.save(labels, torch.cat([lab for lab in labels_list if lab is not None]).numpy())
            written.append(str(labels))
            print(f"written: {', '.join(written)} ({tuple(emb.shape)})")
            print(f"next: contrastkit analyze {out} --labels {labels}")
        else:
            print(f"written: {out} ({tuple(emb.shape)}); the data has no labels")
        return 0

    return _guard("contrastkit embed", body)
