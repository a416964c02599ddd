"""Shared pieces of the cross-modal studies (crossmodal_transfer.py, llm_aligned.py).

Each run trains one config with ``data.validation_fraction = 0.1`` (so the trainer's own
held-out rows are a stratified validation split of the training images, drawn with seed 0 for
every seed), and is then evaluated here on both that validation split (for every choice of
hyper-parameter or calibration constant) and on the Fashion-MNIST test split (reported).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from contrastkit.data.dataset import ArrayDataset
from contrastkit.data.sources import load_data
from contrastkit.train import config as C
from contrastkit.train.evaluation import encode, knn_accuracy, linear_probe_accuracy
from contrastkit.train.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def base_overrides(seed: int, epochs: int, bank: int) -> dict[str, Any]:
    """What every run of both studies sets: one thread, a validation split, no extra evaluation."""
    return {
        "seed": seed,
        "train.epochs": epochs,
        "train.progress": False,
        "train.threads": 1,
        "data.validation_fraction": 0.1,
        "data.eval_train_subset": bank,
        "eval.linear_probe": False,
        "eval.baselines": False,
        "eval.epoch_knn": False,
        "eval.epoch_geometry": False,
    }


def train_run(
    recipe: str,
    overrides: Mapping[str, Any],
    run_dir: Path,
    before: Callable[[Trainer], dict[str, Any]] | None = None,
) -> tuple[Trainer, dict[str, Any]]:
    """Train ``recipe`` with ``overrides`` into ``run_dir``; ``before(trainer)`` runs untrained."""
    cfg = C.resolve(C.load_toml(C.recipe_path(recipe)), dict(overrides))
    trainer = Trainer(cfg, run_dir, overwrite=True)
    untrained = before(trainer) if before is not None else {}
    trainer.fit()
    return trainer, untrained


def test_split(trainer: Trainer) -> ArrayDataset:
    """The real test split of the trainer's data (its ``test_set`` is the validation split)."""
    return load_data(trainer.cfg["data"], trainer.cfg["seed"]).test


def features(trainer: Trainer, data: ArrayDataset) -> torch.Tensor:
    """Backbone features of ``data``."""
    return encode(trainer.model.backbone, data.float_inputs())


def knn_and_probe(
    trainer: Trainer, bank: ArrayDataset, test: ArrayDataset, probe_iter: int = 300
) -> dict[str, float]:
    """Weighted kNN (k=200, T=0.1) and linear-probe accuracy of the backbone, all classes."""
    assert bank.labels is not None and test.labels is not None
    fb, ft = features(trainer, bank), features(trainer, test)
    return {
        "knn": knn_accuracy(fb, bank.labels, ft, test.labels, k=200, temperature=0.1),
        "probe": linear_probe_accuracy(
            fb, bank.labels, ft, test.labels, max_iter=probe_iter, seed=trainer.cfg["seed"]
        ),
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    vals = [float(v) for v in values]
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def fmt(values: Sequence[float], pct: bool = True) -> str:
    """``mean ± std`` (in percent by default)."""
    m, s = mean_std(values)
    return f"{100 * m:.1f} ± {100 * s:.1f}" if pct else f"{m:.3f} ± {s:.3f}"


def cached(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()`` stored as JSON at ``path`` (reused when it exists: studies can resume)."""
    if path.is_file():
        out: dict[str, Any] = json.loads(path.read_text())
        return out
    out = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out
