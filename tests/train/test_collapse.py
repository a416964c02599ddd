"""The collapse check (contrastkit.train.collapse) and the hard contrastive loss in the trainer."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from contrastkit.losses.hard_contrastive import HardContrastiveLoss, num_hard_negatives
from contrastkit.train import config as config_mod
from contrastkit.train.collapse import CollapseMonitor, collapse_value
from contrastkit.train.log import read_records
from contrastkit.train.terms import Term
from contrastkit.train.trainer import Trainer


def _term(module: torch.nn.Module, inputs: set[str], name: str = "main") -> Term:
    return Term(name, type(module).__name__, module, 1.0, "views", inputs)


def test_collapse_value_of_hard_contrastive_is_log_k_plus_one() -> None:
    term = _term(HardContrastiveLoss(temperature=0.3, num_hard=9), {"a", "b"})
    assert collapse_value(term, 2, 32, 8) == pytest.approx(math.log(10), abs=1e-5)
    alpha = HardContrastiveLoss(temperature=0.7, alpha=0.25)
    k = num_hard_negatives(0.25, 63)  # 16 of the other 63 rows
    assert collapse_value(_term(alpha, {"a", "b"}), 2, 64, 8) == pytest.approx(
        math.log(k + 1), abs=1e-5
    )


def test_collapse_value_skips_terms_fed_by_labels() -> None:
    term = _term(HardContrastiveLoss(num_hard=2), {"a", "b", "labels"})
    assert collapse_value(term, 2, 16, 8) is None


def test_monitor_warns_once_at_the_collapse_value_only() -> None:
    terms = {"main": _term(HardContrastiveLoss(temperature=0.7, num_hard=21), {"a", "b"})}
    monitor = CollapseMonitor(terms, 2, 256, 16)
    assert monitor.check({"main": math.log(22) - 0.5}) == []  # well below: learning
    assert monitor.check({"main": math.log(22) + 0.002}) == []  # once: maybe the random init
    with pytest.warns(RuntimeWarning, match="collapse value 3.0910"):
        messages = monitor.check({"main": math.log(22) + 0.002}, uniformity=-0.03)
    assert len(messages) == 1 and "uniformity -0.030" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert monitor.check({"main": math.log(22)}) == []  # already warned


_CONFIG = {
    "seed": 0,
    "data": {"train_subset": 1024, "eval_train_subset": 300, "eval_test_subset": 300},
    "model": {"width": 8, "proj_hidden": 32, "proj_dim": 16},
    "optim": {"warmup_steps": 5},
    "train": {
        "epochs": 4,
        "batch_size": 128,
        "checkpoint_every": 0,
        "log_every": 1,
        "threads": 1,
        "progress": False,
    },
    "eval": {
        "linear_probe": False,
        "baselines": False,
        "epoch_knn": False,
        "epoch_knn_test": 300,
    },
}


def _train(tmp_path: Path, params: dict[str, float]) -> tuple[float, float, list[str]]:
    recipe = json.loads(json.dumps(_CONFIG))
    recipe["objective"] = {"name": "HardContrastiveLoss", "params": params}
    cfg = config_mod.resolve(recipe)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = Trainer(cfg, tmp_path).fit()
    epochs = [r for r in read_records(tmp_path) if r.get("kind") == "epoch"]
    messages = [str(w.message) for w in caught if "collapse value" in str(w.message)]
    return float(results["final_loss"]), float(epochs[-1]["uniformity"]), messages


def test_hard_contrastive_default_trains_without_collapse(tmp_path: Path) -> None:
    """Default α keeps half of the in-batch negatives: the loss falls below ln(K + 1)."""
    k = num_hard_negatives(HardContrastiveLoss().alpha, 127)
    loss, uniformity, messages = _train(tmp_path / "default", {})
    assert loss < math.log(k + 1) - 0.1
    assert uniformity < -0.5
    assert messages == []


def test_too_few_hard_negatives_collapse_and_are_reported(tmp_path: Path) -> None:
    """The paper's α = 0.0819 of 127 in-batch negatives (K = 11) collapses: the trainer warns."""
    loss, uniformity, messages = _train(tmp_path / "paper", {"alpha": 0.0819})
    assert loss == pytest.approx(math.log(12), abs=0.03)
    assert uniformity > -0.3
    assert len(messages) == 1 and "HardContrastiveLoss" in messages[0]
