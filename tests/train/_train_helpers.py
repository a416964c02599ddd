"""Shared helpers of tests/train (a tiny real config, running the CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A tiny but real config: 1024 Fashion-MNIST images, a 8-wide CNN, 4 epochs of 16 steps.
TINY = """
name = "tiny"
seed = {seed}

[data]
train_subset = 1024
eval_train_subset = 600
eval_test_subset = 300

[model]
width = 8
proj_hidden = 32
proj_dim = 16

[objective]
name = "{objective}"
params = {params}

[optim]
warmup_steps = 5

[train]
epochs = 4
batch_size = 64
checkpoint_every = {checkpoint_every}
log_every = 1
threads = 1
progress = false

[eval]
probe_max_iter = 50
baselines = false
epoch_knn = true
epoch_knn_train = 300
epoch_knn_test = 100
"""


def tiny_config(
    tmp: Path,
    *,
    seed: int = 0,
    objective: str = "InfoNCELoss",
    params: str = "{ temperature = 0.2 }",
    checkpoint_every: int = 7,
) -> Path:
    path = tmp / f"tiny-{objective}-{seed}.toml"
    path.write_text(
        TINY.format(
            seed=seed, objective=objective, params=params, checkpoint_every=checkpoint_every
        )
    )
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # src first; tests/train so that configs can name "_custom_modules:..." (user code)
    paths = [str(REPO / "src"), str(REPO / "tests" / "train"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "contrastkit.cli", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"contrastkit {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
