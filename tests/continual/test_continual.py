"""Class-incremental training: task split, rehearsal buffer, herding, bad configs, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError
from contrastkit.train.continual import (
    ContinualTrainer,
    FeatureDistillation,
    RehearsalBuffer,
    class_quotas,
    herding_order,
    task_classes,
)
from contrastkit.train.terms import build_terms


def tiny_cfg(**overrides):
    raw = config_mod.load_toml(config_mod.recipe_path("coconut-fmnist"))
    base = {"budget": "tiny", "train.progress": False, "train.threads": 1}
    base.update(overrides)
    return config_mod.resolve(raw, base)


# -- tasks ---------------------------------------------------------------------------------------
def test_task_classes_orders():
    assert task_classes(6, 3, 2, order_seed=-1) == [[0, 1], [2, 3], [4, 5]]
    a = task_classes(10, 5, 2, order_seed=3)
    assert a == task_classes(10, 5, 2, order_seed=3)
    assert sorted(c for t in a for c in t) == list(range(10))
    assert a != task_classes(10, 5, 2, order_seed=4)
    assert task_classes(4, 2, 2, class_order=[3, 1, 0, 2]) == [[3, 1], [0, 2]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tasks": 4, "classes_per_task": 2}, "does not cover the 10 classes"),
        (
            {"tasks": 2, "classes_per_task": 5, "class_order": [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]},
            "appear more than once",
        ),
        ({"tasks": 1, "classes_per_task": 2, "class_order": [0, 1]}, "are in no task"),
        ({"tasks": 1, "classes_per_task": 1, "class_order": [11]}, "class ids in 0..9"),
        ({"tasks": 0, "classes_per_task": 2}, "continual.tasks"),
    ],
)
def test_task_classes_bad(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        task_classes(10, **kwargs)


# -- buffer and herding --------------------------------------------------------------------------
def test_quotas_and_buffer_rebalance():
    assert class_quotas(7, [5, 2, 9]) == {2: 3, 5: 2, 9: 2}
    buf = RehearsalBuffer(6)
    buf.update({0: [10, 11, 12, 13], 1: [20, 21, 22, 23]})
    assert buf.by_class == {0: [10, 11, 12], 1: [20, 21, 22]}
    buf.update({2: [30, 31, 32], 3: [40, 41]})
    # 6 rows over 4 classes: 2, 2, 1, 1; old classes keep their first (best) rows
    assert buf.by_class == {0: [10, 11], 1: [20, 21], 2: [30], 3: [40]}
    assert len(buf) == 6
    assert buf.positions().tolist() == [10, 11, 20, 21, 30, 40]
    other = RehearsalBuffer(0)
    other.load_state_dict(buf.state_dict())
    assert other.by_class == buf.by_class and other.size == 6


def test_herding_picks_the_row_nearest_the_mean_first_and_no_repeats():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g)
    order = herding_order(x, 30)
    assert sorted(order) == list(range(30))
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    mu = xn.mean(0)
    assert order[0] == int((xn - mu).norm(dim=1).argmin())
    # the running mean of the first k picks tracks the class mean better than random rows do
    k = 5
    herd_err = (xn[order[:k]].mean(0) - mu).norm()
    rand_err = torch.stack(
        [(xn[torch.randperm(30, generator=g)[:k]].mean(0) - mu).norm() for _ in range(50)]
    ).mean()
    assert herd_err < rand_err
    with pytest.raises(ValueError, match="m must be in"):
        herding_order(x, 31)


def test_feature_distillation():
    s = torch.randn(4, 3, requires_grad=True)
    assert float(FeatureDistillation()(s, s.detach()).detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(FeatureDistillation()(s, -s.detach()).detach()) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same shape"):
        FeatureDistillation()(s, s[:2])


# -- bad configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"continual.buffer_size": 5}, "continual.buffer_size: 5 rows cannot keep"),
        ({"continual.teacher": False}, "continual.teacher"),
        ({"continual.epochs_per_task": [1, 1]}, "continual.epochs_per_task"),
        ({"continual.joint": True}, "joint training"),
        ({"continual.tasks": 3}, "does not cover"),
        ({"objectives.ce.name": "CoconutLoss"}, "CrossEntropy"),
    ],
)
def test_bad_continual_configs(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        ContinualTrainer(tiny_cfg(**overrides), tmp_path / "run")


def test_teacher_terms_need_continual_training():
    cfg = tiny_cfg(**{"continual.tasks": 0})
    with pytest.raises(ConfigError, match="continual.tasks > 0"):
        build_terms(cfg, dataset_size=10, has_labels=True, has_text=True)


# -- training, outputs and exact resume ----------------------------------------------------------
def test_run_writes_metrics_and_teacher_is_the_previous_model(tmp_path):
    cfg = tiny_cfg(**{"continual.selection": "herding"})
    trainer = ContinualTrainer(cfg, tmp_path / "run")
    steps_task0 = trainer.spec.epochs[0] * trainer.steps_per_epoch(0)
    trainer.fit(stop_after_steps=steps_task0 + 1)  # one step into task 1
    assert trainer.task == 1 and trainer.teacher is not None
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    assert len(trainer.buffer) == 20
    assert len(trainer.matrix) == 1
    results = ContinualTrainer(cfg, tmp_path / "run", resume=True).fit()
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["accuracy_matrix"] == results["accuracy_matrix"]
    assert [len(r) for r in saved["accuracy_matrix"]] == [1, 2, 3, 4, 5]
    for key in (
        "final_average_accuracy",
        "average_incremental_accuracy",
        "forgetting",
        "backward_transfer",
        "knn_final_average_accuracy",
        "ncm_final_average_accuracy",
        "text_final_average_accuracy",
    ):
        assert key in saved
    assert (tmp_path / "run" / "plots" / "accuracy.png").is_file()
    assert "accuracy matrix" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("stop_at", [3, 13])  # inside task 0; inside task 2 (teacher + buffer)
def test_interrupted_run_equals_uninterrupted(tmp_path, stop_at):
    cfg = tiny_cfg(**{"train.checkpoint_every": 0})
    full = ContinualTrainer(cfg, tmp_path / "full").fit()
    first = ContinualTrainer(cfg, tmp_path / "cut")
    first.fit(stop_after_steps=stop_at)
    assert first.global_step == stop_at
    resumed = ContinualTrainer(cfg, tmp_path / "cut", resume=True)
    out = resumed.fit()
    assert out["accuracy_matrix"] == full["accuracy_matrix"]
    assert out["knn_accuracy_matrix"] == full["knn_accuracy_matrix"]
    assert out["ncm_accuracy_matrix"] == full["ncm_accuracy_matrix"]
    assert out["text_accuracy_matrix"] == full["text_accuracy_matrix"]
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_teacher_is_the_model_at_the_end_of_the_previous_task(tmp_path):
    cfg = tiny_cfg(**{"train.checkpoint_every": 0})
    first = ContinualTrainer(cfg, tmp_path / "run")
    first.fit(stop_after_steps=first.spec.epochs[0] * first.steps_per_epoch(0))  # end of task 0
    end_of_task0 = {k: v.clone() for k, v in first.model.state_dict().items()}
    second = ContinualTrainer(cfg, tmp_path / "run", resume=True)
    second.fit(stop_after_steps=2)  # two steps into task 1
    assert second.task == 1 and second.teacher is not None
    for k, v in second.teacher.state_dict().items():
        torch.testing.assert_close(v, end_of_task0[k], rtol=0, atol=0)
    changed = [
        k for k, v in second.model.state_dict().items() if not torch.equal(v, end_of_task0[k])
    ]
    assert changed  # the student moved on, the teacher did not


def test_rows_with_their_own_text_feed_the_multimodal_term(tmp_path):
    import numpy as np

    g = np.random.default_rng(0)
    for split, n in (("train", 400), ("test", 100)):
        label = np.arange(n) % 4
        x = g.normal(size=(n, 8)).astype(np.float32) + label[:, None]
        text = g.normal(size=(n, 6)).astype(np.float32)
        np.savez(tmp_path / f"{split}.npz", x=x, label=label, text=text)
    cfg = tiny_cfg(
        **{
            "data.format": "embeddings",
            "data.path": str(tmp_path / "train.npz"),
            "data.test_path": str(tmp_path / "test.npz"),
            "data.paired_key": "text",
            "data.train_subset": 0,
            "data.eval_test_subset": 0,
            "model.encoder": "mlp",
            "model.mlp_hidden": [16],
            "continual.tasks": 2,
            "continual.buffer_size": 8,
        }
    )
    trainer = ContinualTrainer(cfg, tmp_path / "run")
    assert trainer.row_text is not None and trainer.class_raw is None
    res = trainer.fit()
    assert [len(r) for r in res["accuracy_matrix"]] == [1, 2]
    with pytest.raises(ConfigError, match="continual.random_text"):
        ContinualTrainer(
            {**cfg, "continual": {**cfg["continual"], "random_text": True}}, tmp_path / "x"
        )


def test_cli_trains_the_recipe_and_resumes(tmp_path):
    from contrastkit.train.cli import main_train

    out = tmp_path / "cli"
    args = ["--recipe", "coconut-fmnist", "--set", "budget=tiny", "--set", "train.progress=false"]
    assert main_train([*args, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["accuracy_matrix"]) == 5
    assert (out / "report.md").is_file()
    # a finished run resumes to the same results (nothing left to train)
    assert main_train(["--resume", str(out)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["accuracy_matrix"] == results["accuracy_matrix"]
