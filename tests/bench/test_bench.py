"""The benchmark harness runs every implementation and renders the comparison table."""

from __future__ import annotations

import json

import pytest

from contrastkit.bench import cli, worker


@pytest.mark.parametrize("impl", list(worker.IMPLEMENTATIONS))
def test_every_implementation_computes_the_same_loss(impl):
    result = worker.run(impl, batch=64, dim=16, reps=1)
    reference = worker.run("naive-dense", batch=64, dim=16, reps=1)
    assert result["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    assert result["median_s"] > 0


def test_cli_writes_table_and_json(tmp_path, capsys):
    code = cli.main(["--batch-sizes", "32", "--dims", "8", "--reps", "1", "--out", str(tmp_path)])
    assert code == 0
    table = (tmp_path / "clip_bench.md").read_text()
    payload = json.loads((tmp_path / "clip_bench.json").read_text())
    assert {r["impl"] for r in payload["results"]} == set(cli.IMPLS)
    assert all(r["median_s"] is not None for r in payload["results"])
    assert "| 32 | 8 |" in table and "roofline" in table


def test_dense_configurations_over_the_memory_cap_are_skipped_with_a_reason(tmp_path):
    cli.main(
        [
            "--batch-sizes",
            "4096",
            "--dims",
            "8",
            "--reps",
            "1",
            "--impls",
            "naive-dense",
            "--max-dense-gib",
            "0.1",
            "--out",
            str(tmp_path),
        ]
    )
    payload = json.loads((tmp_path / "clip_bench.json").read_text())
    assert payload["results"][0]["note"].startswith("skipped: needs")


def test_missing_peer_says_how_to_install_it(monkeypatch):
    import subprocess

    def fake_run(*args, **kwargs):
        stderr = "Traceback ...\nModuleNotFoundError: No module named 'open_clip'\n"
        return subprocess.CompletedProcess(args, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert cli._run_worker(["--impl", "open_clip"], timeout=5) == (
        None,
        "not installed: run make peers",
    )
