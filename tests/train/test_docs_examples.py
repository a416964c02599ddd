"""The runnable examples of docs/training.md run as written (at a tiny budget)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from _train_helpers import REPO, run_cli

EXAMPLES = REPO / "docs" / "examples"


def test_two_objectives_example(tmp_path: Path) -> None:
    run = tmp_path / "two"
    run_cli(
        "train", str(EXAMPLES / "two_objectives.toml"), "--set", "budget=tiny", "--out", str(run)
    )
    results = json.loads((run / "results.json").read_text())
    assert results["objective"] == "SupConLoss+CLIPLoss+CrossEntropy"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss/contrast", "loss/text", "loss/ce"} <= set(record)
    assert "zero_shot" in results


def test_your_encoder_example(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = tmp_path / "mine"
    run_cli(
        "train",
        "--recipe",
        "simclr-fmnist",
        "--set",
        "budget=tiny",
        "--out",
        str(run),
        "--set",
        "model.encoder=mynets:gray_convnet",
        "--set",
        "model.encoder_kwargs={width = 8}",
        "--set",
        "eval.baselines=false",
    )
    assert json.loads((run / "results.json").read_text())["steps"] == 6
    assert 'encoder = "mynets:gray_convnet"' in (run / "config.toml").read_text()
