"""Nothing lost: fault injection on the trainer (divergence, corrupt checkpoints, bad paths)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from _train_helpers import run_cli, tiny_config

from contrastkit.train import checkpoint as ckpt


def _fails(*args: str, code: int = 2) -> str:
    proc = run_cli(*args, check=False)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr  # one clear line
    return lines[0]


@pytest.mark.parametrize(
    ("objective", "what"), [("NaNLossAfter", "loss/main = nan"), ("InfGradAfter", "weight ")]
)
def test_divergence_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, objective: str, what: str
) -> None:
    cfg = tiny_config(
        tmp_path,
        objective=f"_custom_modules:{objective}",
        params="{ after = 4 }",
        checkpoint_every=2,
    )
    run = tmp_path / "run"
    line = _fails("train", str(cfg), "--out", str(run), code=1)
    assert "training diverged at step 4" in line and what in line
    assert "last good checkpoint (step 2)" in line
    state, path = ckpt.load_latest(run / "checkpoints")
    assert path.name == "last.pt" and state["position"]["global_step"] == 2
    assert ckpt.first_non_finite(state) is None
    assert not (run / "results.json").exists()
    # the run resumes from its last good state (and diverges again at the same step)
    line = _fails("train", "--resume", str(run), code=1)
    assert "training diverged at step 4" in line


def test_corrupt_last_checkpoint_falls_back_to_previous(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, checkpoint_every=3)
    run = tmp_path / "run"
    run_cli("train", str(cfg), "--out", str(run), "--set", "train.max_steps=7")
    last, prev = run / "checkpoints" / "last.pt", run / "checkpoints" / "prev.pt"
    assert ckpt.load(last)["position"]["global_step"] == 7
    assert ckpt.load(prev)["position"]["global_step"] == 6
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # torn write
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.verify(last)
    with pytest.warns(UserWarning, match="resuming from prev.pt"):
        state, path = ckpt.load_latest(run / "checkpoints")
    assert path == prev and state["position"]["global_step"] == 6
    prev.write_bytes(b"garbage")
    line = _fails(
        "train", "--resume", str(run), "--allow-config-change", "--set", "train.max_steps=8"
    )
    assert "cannot resume" in line and "checksum mismatch" in line


def test_non_finite_state_is_never_written(tmp_path: Path) -> None:
    import torch

    good = tmp_path / "last.pt"
    ckpt.save_atomic({"w": torch.ones(3)}, good)
    with pytest.raises(ckpt.CheckpointError, match=r"w\[?.*is not finite"):
        ckpt.save_atomic({"w": torch.tensor([1.0, float("nan")])}, good, keep_previous=True)
    assert torch.equal(ckpt.load(good)["w"], torch.ones(3))
    assert not (tmp_path / "prev.pt").exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_run_directory_rules(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, checkpoint_every=2)
    run = tmp_path / "run"
    run_cli("train", str(cfg), "--out", str(run), "--set", "train.max_steps=3")
    report = (run / "report.md").read_text()
    # --out on an existing run refuses ...
    assert "already holds a run" in _fails("train", str(cfg), "--out", str(run))
    # ... resume of a finished run does nothing and keeps its report
    proc = run_cli("train", "--resume", str(run))
    assert "nothing to do" in proc.stderr and (run / "report.md").read_text() == report
    # a changed config.toml is refused on resume unless asked for
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("lr = 0.002", "lr = 0.01"))
    assert "differs from the config" in _fails("train", "--resume", str(run))
    (run / "config.toml").write_text(text)
    # stray temporary files of a killed writer are cleaned on resume
    stray = run / "checkpoints" / ".last.pt.tmp12345"
    stray.write_bytes(b"partial")
    run_cli("train", "--resume", str(run))
    assert not stray.exists()
    # --overwrite starts afresh
    run_cli("train", str(cfg), "--out", str(run), "--overwrite", "--set", "train.max_steps=2")
    assert json.loads((run / "results.json").read_text())["steps"] == 2
    # --resume without a checkpoint is an error, not a silent restart from step 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.toml").write_text((run / "config.toml").read_text())
    assert "no checkpoint to resume from" in _fails("train", "--resume", str(empty))


def test_bad_devices_and_data_files_give_one_line(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    out = str(tmp_path / "x")
    import torch

    if not torch.cuda.is_available():
        line = _fails("train", str(cfg), "--out", out, "--set", "train.device=cuda")
        assert "train.device: 'cuda' requested, but CUDA is not available" in line
    assert "train.device" in _fails("train", str(cfg), "--out", out, "--set", "train.device=tpu9")
    # Fashion-MNIST files that are not gzip, or cut short
    root = tmp_path / "fm"
    root.mkdir()
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    names += ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for name in names:
        (root / name).write_bytes(b"not gzip at all")
    line = _fails("train", str(cfg), "--out", out, "--data-dir", str(root))
    assert "not a readable gzip file" in line and "train-images-idx3-ubyte.gz" in line
    with gzip.open(root / names[0], "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    line = _fails("train", str(cfg), "--out", out, "--data-dir", str(root))
    assert "truncated" in line and names[0] in line


def test_unwritable_output_directory_gives_one_line(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
        out = target / "run"
    else:  # root ignores permission bits: use a read-only system folder
        out = Path("/sys/contrastkit-test-run")
        if os.access("/sys", os.W_OK) and not out.parent.is_mount():
            pytest.skip("no read-only folder to write into on this machine")
    line = _fails("train", str(tiny_config(tmp_path)), "--out", str(out))
    assert "cannot write or read" in line and "contrastkit-test-run" in line or "ro/run" in line
