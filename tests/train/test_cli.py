from __future__ import annotations

import json
from pathlib import Path

from _train_helpers import run_cli, tiny_config

from contrastkit.train.cli import main_eval, main_recipes, main_train


def test_recipes_lists_shipped_recipes(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main_recipes([]) == 0
    out = capsys.readouterr().out
    for name in ["simclr-fmnist", "supcon-fmnist", "longtail-fmnist", "cwcl-zeroshot"]:
        assert name in out
    assert main_recipes(["--show", "simclr-fmnist"]) == 0
    assert 'name = "simclr-fmnist"' in capsys.readouterr().out
    assert main_recipes(["--show", "nope"]) == 2


def test_train_errors_are_clear_and_exit_2(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main_train(["--recipe", "nope"]) == 2
    assert "unknown recipe 'nope'" in capsys.readouterr().err
    assert main_train(["--recipe", "simclr-fmnist", "--set", "objective.name=Nope"]) == 2
    assert "objectives.main.name: unknown objective 'Nope'" in capsys.readouterr().err
    assert main_train(["--recipe", "simclr-fmnist", "--set", "train.epochs=many"]) == 2
    assert "train.epochs: expected int" in capsys.readouterr().err
    code = main_train(
        [
            "--recipe",
            "simclr-fmnist",
            "--data-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert main_train([]) == 2


def test_train_then_eval_reproduces_results(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(tmp_path, checkpoint_every=0)
    run = tmp_path / "run"
    proc = run_cli("train", str(cfg), "--out", str(run), "--set", "train.max_steps=4")
    assert "kNN acc" in proc.stdout and "random-init encoder" not in proc.stdout  # baselines off
    assert main_eval([str(run)]) == 0
    evaluated = json.loads((run / "eval.json").read_text())
    trained = json.loads((run / "results.json").read_text())
    assert evaluated["rows"][0]["knn_acc"] == trained["rows"][0]["knn_acc"]
    assert evaluated["rows"][0]["linear_probe_acc"] == trained["rows"][0]["linear_probe_acc"]
    # evaluation settings can be changed at eval time (and change the number)
    assert main_eval([str(run), "--set", "eval.knn_k=1"]) == 0
    assert main_eval([str(run), "--set", "train.epochs=3"]) == 2
    assert main_eval([str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
