"""``contrastkit sweep --budget tiny`` end to end: real runs, a run killed mid-way, resume."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SWEEP = """
name = "e2e"
description = "Three seeds of tiny runs; the first to reach step 3 is killed (SIGKILL)."
recipe = "simclr-fmnist"
seeds = [0, 1, 2]
metrics = ["linear_probe_acc", "uniformity", "final_loss"]

[set]
"model.width" = 8
"eval.baselines" = false
"objective.name" = "_sweep_modules:CrashOnce"
"objective.params" = {{ marker = "{marker}", at = 3 }}

[budgets.tiny.set]                 # wins over the recipe's tiny budget
"data.train_subset" = 384          # 6 steps of 64 = one epoch: an epoch record with geometry
"data.eval_train_subset" = 300
"data.eval_test_subset" = 200
"eval.probe_max_iter" = 30

[[plots]]
kind = "scatter"
x = "uniformity"
y = "linear_probe_acc"
"""


def _sweep(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "src"), str(Path(__file__).parent), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-m", "contrastkit.cli", "sweep", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tiny_sweep_reports_a_failed_run_then_resumes_it(tmp_path: Path, fmnist: None) -> None:
    marker = tmp_path / "crashed"
    spec = tmp_path / "e2e.toml"
    spec.write_text(SWEEP.format(marker=marker))
    out, report = tmp_path / "runs", tmp_path / "report"
    args = [str(spec), "--budget", "tiny", "--out", str(out), "--report", str(report)]
    first = _sweep(*args, "--jobs", "2")
    # one run was killed: it is reported (exit 1, table, json) and the other three finished
    assert first.returncode == 1, first.stderr
    assert marker.exists()
    data = json.loads((report / "study_e2e.json").read_text())
    status = {r["name"]: r["status"] for r in data["runs"]}
    killed = [n for n, s in status.items() if s == "failed"]
    assert len(killed) == 1, status
    assert sum(s == "finished" for s in status.values()) == 2
    error = next(r["error"] for r in data["runs"] if r["status"] == "failed")
    assert "killed by signal 9" in error
    md = (report / "study_e2e.md").read_text()
    assert f"final/{killed[0]}" in md and "1 failed" in md
    assert "[3/3]" in first.stderr and "left" in first.stderr
    assert (out / "final" / killed[0] / "checkpoints" / "last.pt").is_file()

    # text written outside the markers survives a rerun
    (report / "study_e2e.md").write_text(md + "\nFindings: kept.\n")
    finished = {
        n: (out / "final" / n / "results.json").stat().st_mtime_ns for n in status if n != killed[0]
    }
    second = _sweep(*args)
    assert second.returncode == 0, second.stderr
    assert "2 runs already finished" in second.stderr
    assert f"resuming final/{killed[0]}" in second.stderr
    log = (out / "final" / killed[0] / "sweep.log").read_text()
    assert "(resume): contrastkit train --resume" in log and "at step 2" in log
    for name, mtime in finished.items():  # finished runs were not run again
        assert (out / "final" / name / "results.json").stat().st_mtime_ns == mtime

    data = json.loads((report / "study_e2e.json").read_text())
    assert all(r["status"] == "finished" for r in data["runs"])
    assert data["command"].startswith("contrastkit sweep ")
    # mean ± std = the statistics of the runs' own results.json and last epoch record
    (point,) = data["points"]
    runs = sorted(out.glob("final/s*"))
    assert len(runs) == 3 and point["seeds"] == [0, 1, 2]
    values = [
        json.loads((r / "results.json").read_text())["rows"][0]["linear_probe_acc"] for r in runs
    ]
    assert point["mean"]["linear_probe_acc"] == pytest.approx(statistics.fmean(values))
    assert point["std"]["linear_probe_acc"] == pytest.approx(statistics.stdev(values))
    records = [
        [json.loads(x) for x in (r / "metrics.jsonl").read_text().splitlines()] for r in runs
    ]
    unif = [[e for e in recs if e["kind"] == "epoch"][-1]["uniformity"] for recs in records]
    assert point["mean"]["uniformity"] == pytest.approx(statistics.fmean(unif))
    md = (report / "study_e2e.md").read_text()
    assert md.rstrip().endswith("Findings: kept.")
    assert "3 finished, 0 failed" in md and "study_e2e.png" in md
    assert (report / "study_e2e.png").stat().st_size > 1000
