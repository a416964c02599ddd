"""torchrun: 2 gloo processes train exactly like one process on the same global batch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _train_helpers import cli_env, run_cli

from contrastkit.train.checkpoint import load

pytestmark = pytest.mark.slow

# BatchNorm in the encoder and a learnable temperature: both must be synchronised across ranks.
CONFIG = """
name = "ddp"
seed = 0
[data]
train_subset = 512
eval_train_subset = 300
eval_test_subset = 200
[model]
width = 8
proj_hidden = 32
proj_dim = 16
[objective]
name = "CLIPLoss"
params = { temperature = 0.2 }
[optim]
warmup_steps = 2
schedule = "constant"
[train]
epochs = 1
max_steps = 6
batch_size = 64
checkpoint_every = 3
log_every = 1
threads = 1
progress = false
[eval]
baselines = false
linear_probe = false
epoch_knn = false
epoch_geometry = false
"""


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("contrastkit")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # the documented form: torchrun --no-python contrastkit train ...
    cmd += ["--no-python", str(exe)] if exe.is_file() else ["-m", "contrastkit.cli"]
    proc = subprocess.run(
        cmd + list(args), env=cli_env(), capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise AssertionError(f"torchrun {args} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def _losses(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "step"]


def _assert_close(a: list[tuple[int, float]], b: list[tuple[int, float]], rel: float) -> None:
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 7))
    for (s, x), (_, y) in zip(a, b, strict=True):
        assert abs(x - y) <= rel * abs(x), (s, x, y)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("torchrun")
    (tmp / "ddp.toml").write_text(CONFIG)
    run_cli("train", str(tmp / "ddp.toml"), "--out", str(tmp / "single"))
    return tmp


def test_two_gloo_processes_follow_the_single_process_trajectory(single: Path) -> None:
    cfg, run = single / "ddp.toml", single / "two"
    _torchrun("train", str(cfg), "--out", str(run))
    _assert_close(_losses(single / "single"), _losses(run), rel=1e-4)
    results = json.loads((run / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 6
    # rank 0 alone wrote the run directory: one record per step, no duplicates
    assert len(_losses(run)) == 6
    a, b = (
        load(single / "single" / "checkpoints" / "final.pt"),
        load(run / "checkpoints" / "final.pt"),
    )
    (temp,) = [k for k in a["model"] if k.startswith("objectives.main.temperature.")]
    assert abs(float(a["model"][temp]) - float(b["model"][temp])) < 1e-5  # learnable temperature


def test_resume_under_torchrun_and_with_another_world_size(single: Path) -> None:
    cfg = single / "ddp.toml"
    half = single / "half"
    # stop after the step-3 checkpoint by asking for 3 steps, then resume to 6 under torchrun
    _torchrun("train", str(cfg), "--out", str(half), "--set", "train.max_steps=3")
    one = single / "one"
    shutil.copytree(half, one)
    _torchrun("train", "--resume", str(half), "--allow-config-change", "--set", "train.max_steps=6")
    _assert_close(_losses(single / "single"), _losses(half), rel=1e-4)
    # a 2-process checkpoint resumed by one process (the global batch is the same)
    run_cli("train", "--resume", str(one), "--allow-config-change", "--set", "train.max_steps=6")
    _assert_close(_losses(single / "single"), _losses(one), rel=1e-4)


@pytest.mark.parametrize(
    "override", ["train.sync_batchnorm=false", "objective.params.gather_distributed=false"]
)
def test_negative_controls_break_the_equality(single: Path, override: str) -> None:
    # per-rank BatchNorm statistics, or each rank contrasting only its own rows: other numbers
    run = single / override.split("=")[0].replace(".", "-")
    _torchrun("train", str(single / "ddp.toml"), "--out", str(run), "--set", override)
    a, b = _losses(single / "single"), _losses(run)
    assert max(abs(x - y) / abs(x) for (_, x), (_, y) in zip(a, b, strict=True)) > 1e-3
