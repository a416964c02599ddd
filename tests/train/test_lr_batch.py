"""``optim.lr_batch``: the learning rate scaled linearly with the batch size."""

from __future__ import annotations

from pathlib import Path

import pytest

from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError
from contrastkit.train.trainer import Trainer

_RECIPE = {
    "data": {"train_subset": 512, "eval_train_subset": 100, "eval_test_subset": 100},
    "model": {"width": 8, "proj_hidden": 16, "proj_dim": 8},
    "optim": {"lr": 1e-3, "warmup_steps": 0, "schedule": "constant"},
    "train": {"epochs": 1, "threads": 1, "progress": False},
}


def _lr(tmp_path: Path, **overrides: object) -> float:
    cfg = config_mod.resolve(_RECIPE, overrides)
    return float(Trainer(cfg, tmp_path).optimizer.param_groups[0]["lr"])


def test_lr_is_scaled_linearly_with_the_batch_size(tmp_path: Path) -> None:
    assert _lr(tmp_path / "a", **{"train.batch_size": 64}) == pytest.approx(1e-3)  # off
    scaled = {"train.batch_size": 64, "optim.lr_batch": 256}
    assert _lr(tmp_path / "b", **scaled) == pytest.approx(2.5e-4)
    scaled = {"train.batch_size": 512, "optim.lr_batch": 256, "data.train_subset": 1024}
    assert _lr(tmp_path / "c", **scaled) == pytest.approx(2e-3)


def test_negative_lr_batch_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="optim.lr_batch"):
        _lr(tmp_path, **{"optim.lr_batch": -1})
