"""A light install: the wheel works with torch alone; importing contrastkit and its CLI is cheap."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What `pip install contrastkit` may bring besides torch (and torch's own dependencies).
CORE = {"contrastkit", "numpy"}
#: The optional dependencies that must stay out of a plain install (they live in extras).
EXTRAS_ONLY = {
    "matplotlib",
    "scikit-learn",
    "kornia",
    "tqdm",
    "safetensors",
    "pillow",
    "tensorboard",
    "tokenizers",
}


def _run(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": ""}  # the installed package only, never src/
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, contrastkit\n"
        "from contrastkit.cli import main\n"
        "assert main(['--help']) == 0 and main(['--version']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "import contrastkit as ck\n"
        "ck.metrics.auc, ck.data.FashionMNIST  # lazy sub-packages\n"
        "assert 'torch' in sys.modules\n"
        "heavy = {'matplotlib', 'sklearn', 'kornia', 'safetensors', 'tokenizers', 'PIL'}\n"
        "assert not heavy & {m.split('.')[0] for m in sys.modules}, 'an extra was imported'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "contrastkit 0.1.0" in out.stdout
    assert "usage: contrastkit" in out.stdout


def test_every_name_exported_today_is_still_exported():
    import contrastkit as ck

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| Objective |") : readme.index("## The similarity engine")]
    api_column = [row.split("|")[2] for row in table.splitlines()[2:] if row.startswith("|")]
    names = {m for cell in api_column for m in re.findall(r"`([A-Za-z_]\w*)(?:\(|`)", cell)}
    assert len(names) > 40
    assert names <= set(ck.__all__), sorted(names - set(ck.__all__))
    assert {"LearnableTemperature", "grad_cache_step"} <= set(ck.__all__)
    for name in ck.__all__:
        assert getattr(ck, name) is not None
    assert ck.__version__ == "0.1.0"


@pytest.mark.slow
def test_wheel_installs_with_torch_alone_and_computes_a_loss(tmp_path: Path):
    py = sys.executable
    _run(py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist",
         str(ROOT), cwd=tmp_path)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("contrastkit-*.whl")
    _run(py, "-m", "venv", "venv", cwd=tmp_path)  # a clean venv: no system site-packages
    vpy = str(tmp_path / "venv" / "bin" / "python")
    constraints = str(ROOT / "constraints.txt")
    _run(vpy, "-m", "pip", "install", "-q", "-c", constraints, "torch==2.13.0")
    _run(vpy, "-m", "pip", "install", "-q", "-c", constraints, str(wheel))
    installed = {
        re.split(r"==| @ ", line)[0].lower()
        for line in _run(vpy, "-m", "pip", "freeze").splitlines()
    }
    assert CORE <= installed
    assert not installed & EXTRAS_ONLY, sorted(installed & EXTRAS_ONLY)
    out = _run(
        vpy,
        "-c",
        "import torch, contrastkit as ck\n"
        "a, b = torch.randn(8, 16), torch.randn(8, 16)\n"
        "print(float(ck.clip_loss(a, b)), float(ck.SupConLoss()(torch.stack([a, b], 1))))\n"
        "print(ck.metrics.alignment(a, b) >= 0)\n",
        cwd=tmp_path,
    )
    loss, supcon = (float(x) for x in out.split()[:2])
    assert 0 < loss < 10 and 0 < supcon < 10
    assert out.split()[2] == "True"
    assert "contrastkit 0.1.0" in _run(str(tmp_path / "venv" / "bin" / "contrastkit"), "--version")
    missing = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "contrastkit"), "analyze", "x.npy"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0 and "contrastkit[" in missing.stderr  # names the extra
