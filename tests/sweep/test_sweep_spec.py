"""Sweep files, run planning, metric collection, mean ± std, validation-stage choice, reports.

In process and without training: finished runs are written by hand where a test needs them.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from contrastkit.sweep import aggregate, report, runner, spec
from contrastkit.sweep.cli import main
from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError

CONFIG = """
name = "unit"
[data]
train_subset = 256
[objective]
name = "InfoNCELoss"
params = { temperature = 0.2 }
[train]
epochs = 1
batch_size = 64
"""

SWEEP = """
name = "unit"
config = "base.toml"
seeds = [0, 1, 2]
metrics = ["linear_probe_acc", "uniformity"]
[grid]
"objective.params.temperature" = [0.1, 0.5]
"train.batch_size" = [32, 64]
[variants.a]
"objective.name" = "InfoNCELoss"
[variants.b]
"objective.name" = "DCLLoss"
"objective.params" = { temperature = 0.3 }
[select]
metric = "linear_probe_acc"
keys = ["objective.params.temperature"]
seeds = [0, 1]
[[plots]]
kind = "line"
x = "train.batch_size"
y = "linear_probe_acc"
stage = "final"
[[plots]]
kind = "scatter"
x = "uniformity"
y = "linear_probe_acc"
label = "objective.params.temperature"
[budgets.small]
seeds = [7]
grid = { "train.batch_size" = [16] }
set = { "data.train_subset" = 128 }
"""


def _write_sweep(tmp: Path, text: str = SWEEP) -> Path:
    (tmp / "base.toml").write_text(CONFIG)
    path = tmp / "unit.toml"
    path.write_text(text)
    return path


def test_plan_crosses_variants_grid_and_seeds(tmp_path: Path) -> None:
    sweep = spec.load_sweep(str(_write_sweep(tmp_path)))
    runs = spec.plan_stage(sweep, spec.VALIDATION)
    assert len(runs) == 2 * 2 * 2 * 2  # variants x temperatures x batch sizes x select.seeds
    assert spec.final_count(sweep) == 2 * 2 * 3  # variants x batch sizes (τ chosen) x seeds
    first = runs[0]
    assert first.name == "a-temperature=0.1-batch_size=32-s0"
    assert first.cfg["data"]["validation_fraction"] == 0.1  # the validation stage's split
    assert first.cfg["objectives"]["main"]["params"] == {"temperature": 0.1}
    dcl = next(r for r in runs if r.variant == "b" and r.point["train.batch_size"] == 64)
    # order: set <- variant <- grid point <- seed <- stage
    assert dcl.cfg["objectives"]["main"]["name"] == "DCLLoss"
    assert (
        dcl.cfg["objectives"]["main"]["params"]["temperature"]
        == dcl.point["objective.params.temperature"]
    )
    assert dcl.cfg["train"]["batch_size"] == 64 and dcl.cfg["seed"] == dcl.seed
    # the variant's table is not modified by resolving the runs
    assert sweep.variants["b"]["objective.params"] == {"temperature": 0.3}
    final = spec.plan_stage(
        sweep, spec.FINAL, {"a": [{"objective.params.temperature": 0.5, "train.batch_size": 32}]}
    )
    assert [r.name for r in final] == [f"a-temperature=0.5-batch_size=32-s{s}" for s in (0, 1, 2)]
    assert final[0].cfg["data"]["validation_fraction"] == 0.0


def test_budgets_and_command_line_overrides(tmp_path: Path) -> None:
    path = _write_sweep(tmp_path)
    sweep = spec.load_sweep(str(path), "small", {"train.epochs": 3})
    assert sweep.seeds == (7,) and sweep.grid["train.batch_size"] == [16]
    assert sweep.grid["objective.params.temperature"] == [0.1, 0.5]  # tables merge by key
    run = spec.plan_stage(sweep, spec.FINAL)[0]
    assert run.cfg["data"]["train_subset"] == 128 and run.cfg["train"]["epochs"] == 3
    # a recipe budget: its sizes win over the sweep's full-size `set`, not over the grid
    shipped = spec.load_sweep("temperature", "tiny")
    runs = spec.plan_stage(shipped, spec.VALIDATION)
    assert [r.point["objective.params.temperature"] for r in runs] == [0.1, 0.5]
    cfg = runs[0].cfg
    assert cfg["budget"] == "tiny" and cfg["train"]["max_steps"] == 6
    assert cfg["data"]["train_subset"] == 2048  # the recipe's tiny value, not the sweep's 10 000
    assert cfg["objectives"]["main"]["params"]["symmetric"] is True
    with pytest.raises(ConfigError, match="--budget: 'huge' is neither"):
        spec.load_sweep(str(path), "huge")


@pytest.mark.parametrize("name", sorted(spec.list_sweeps()))
@pytest.mark.parametrize("budget", [None, "tiny"])
def test_shipped_sweeps_resolve_every_run(name: str, budget: str | None) -> None:
    sweep = spec.load_sweep(name, budget)
    runs = spec.plan_stage(sweep, sweep.stages[0])
    assert runs and len({r.name for r in runs}) == len(runs)
    assert len(sweep.seeds) >= (2 if budget else 3)
    assert sweep.select is not None  # hyper-parameters are chosen on validation
    for r in runs:
        assert r.cfg["data"]["validation_fraction"] > 0
    for plot in sweep.plots:
        assert plot.kind != "line" or plot.x in sweep.grid


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (("seeds = [0, 1, 2]", "seeds = [0, 0]"), "seeds repeat"),
        (("seeds = [0, 1, 2]", "seeds = [0, 1, 2]\nsteps = 3"), "steps: unknown key"),
        (('config = "base.toml"', 'config = "base.toml"\nrecipe = "simclr-fmnist"'), "either"),
        (("[grid]", '[grid]\n"seed" = [1, 2]'), "grid.seed"),
        (("[grid]", '[grid]\n"train.epochs" = []'), "grid.train.epochs"),
        (('keys = ["objective.params.temperature"]', 'keys = ["optim.lr"]'), "select.keys"),
        (('kind = "line"', 'kind = "bar"'), r"plots\[0\].kind"),
        (('"train.batch_size" = [32, 64]', '"train.bogus" = [1]'), "train.bogus: unknown key"),
    ],
)
def test_bad_sweep_files_name_the_key(tmp_path: Path, edit: tuple[str, str], match: str) -> None:
    path = _write_sweep(tmp_path, SWEEP.replace(*edit, 1))
    with pytest.raises(ConfigError, match=match):
        sweep = spec.load_sweep(str(path))
        spec.plan_stage(sweep, spec.VALIDATION)


def test_unknown_sweep_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="temperature"):
        spec.load_sweep("nope")


@pytest.mark.parametrize(
    "value", [0.1, 1e-5, 3, True, "a b", [0.2, 1.0], {"temperature": 0.1, "x-y": "z", "a.b": 1}]
)
def test_set_values_survive_the_command_line(value: Any) -> None:
    assert config_mod.parse_value(runner.toml_literal(value)) == value


def test_short_keys_and_names() -> None:
    sweep = spec.Sweep(
        name="n",
        description="",
        source=Path("x"),
        base={},
        base_label="",
        base_args=[],
        budget="",
        seeds=(0,),
        metrics=(),
        overrides={},
        grid={"a.temperature": [1], "b.temperature": [2], "train.batch_size": [3]},
        variants={"": {}},
        select=None,
        plots=(),
    )
    assert sweep.short_keys() == {
        "a.temperature": "a.temperature",
        "b.temperature": "b.temperature",
        "train.batch_size": "batch_size",
    }
    point = {"a.temperature": 0.5, "b.temperature": [1, 2], "train.batch_size": 3}
    assert spec.run_name(sweep, "v/x", point, 4) == (
        "v_x-a.temperature=0.5-b.temperature=_1_2_-batch_size=3-s4"
    )


# -- metrics -----------------------------------------------------------------------------------
def _fake_run(path: Path, cfg: dict[str, Any] | None, probe: float, unif: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if cfg is not None:
        (path / "config.toml").write_text(config_mod.dumps(cfg))
    results = {
        "rows": [
            {"encoder": "trained (InfoNCELoss)", "knn_acc": probe - 0.1, "linear_probe_acc": probe},
            {"encoder": "random-init encoder", "knn_acc": 0.5, "linear_probe_acc": 0.6},
            {"encoder": "raw pixels", "knn_acc": 0.55, "linear_probe_acc": 0.65},
        ],
        "zero_shot": {"all_way": 0.25, "seen_classes": [0, 1]},
        "final_loss": 2.5,
        "final_temperature": None,
        "objective": "InfoNCELoss",
    }
    (path / "results.json").write_text(json.dumps(results))
    records = [
        {"kind": "step", "step": 1, "loss": 3.0},
        {"kind": "epoch", "step": 4, "epoch": 0, "uniformity": -1.0, "tolerance": 0.9},
        {"kind": "step", "step": 8, "loss": 2.0, "lr": 0.1},
        {"kind": "epoch", "step": 8, "epoch": 1, "uniformity": unif, "tolerance": math.nan},
        {"kind": "task", "step": 8, "task": 1, "avg_acc": 0.7},
    ]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{torn")


def test_run_metrics_reads_results_and_the_last_records(tmp_path: Path) -> None:
    _fake_run(tmp_path, None, 0.8, -2.0)
    m = aggregate.run_metrics(tmp_path)
    assert m["linear_probe_acc"] == 0.8 and m["knn_acc"] == pytest.approx(0.7)
    assert m["rows.random_init.knn_acc"] == 0.5 and m["rows.raw.linear_probe_acc"] == 0.65
    assert m["zero_shot.all_way"] == 0.25 and m["final_loss"] == 2.5
    assert "final_temperature" not in m and "objective" not in m  # None and strings
    assert m["uniformity"] == -2.0 and m["epoch.uniformity"] == -2.0  # the last epoch record
    assert "tolerance" not in m  # NaN is no number
    assert m["step.loss"] == 2.0 and m["step.lr"] == 0.1 and m["task.avg_acc"] == 0.7
    assert aggregate.epoch_series(tmp_path, "uniformity") == [(0, -1.0), (1, -2.0)]


def _result(run: spec.RunSpec, probe: float | None, unif: float = -2.0) -> aggregate.RunResult:
    if probe is None:
        return aggregate.RunResult(run, "failed", error="exit status 1: diverged")
    metrics = {"linear_probe_acc": probe, "uniformity": unif, "steps": 4.0}
    return aggregate.RunResult(run, "finished", metrics=metrics)


def test_summarise_means_stds_and_failures(tmp_path: Path) -> None:
    sweep = spec.load_sweep(str(_write_sweep(tmp_path)))
    runs = spec.plan_stage(sweep, spec.FINAL)[:6]  # two grid points x three seeds
    probes = [0.8, 0.9, None, 0.7, 0.75, 0.71]
    stats = aggregate.summarise(
        [_result(r, p) for r, p in zip(runs, probes, strict=True)], sweep.metrics
    )
    assert len(stats) == 2
    first, second = stats
    assert first.seeds == [0, 1] and first.failed == [f"{runs[2].name}: failed"]
    assert first.mean["linear_probe_acc"] == pytest.approx(0.85)
    assert first.std["linear_probe_acc"] == pytest.approx(statistics.stdev([0.8, 0.9]))
    assert list(first.mean)[:2] == ["linear_probe_acc", "uniformity"]  # requested first
    assert "steps" in first.mean  # then every other metric
    assert second.mean["linear_probe_acc"] == pytest.approx(statistics.fmean([0.7, 0.75, 0.71]))
    single = aggregate.summarise([_result(runs[0], 0.8)], sweep.metrics)[0]
    assert single.std["linear_probe_acc"] is None
    assert report.cell(single, "linear_probe_acc") == "0.8000"
    assert report.cell(first, "linear_probe_acc") == "0.8500 ± 0.0707"
    assert report.cell(first, "nope") == "—"


def test_choose_per_variant_and_free_key(tmp_path: Path) -> None:
    sweep = spec.load_sweep(str(_write_sweep(tmp_path)))
    assert sweep.select is not None
    runs = spec.plan_stage(sweep, spec.VALIDATION)

    # probe accuracy: best τ is 0.5 at batch 32 and 0.1 at batch 64, for variant a; b failed at
    # τ 0.1 batch 32 (both seeds) and is worse at 0.5 otherwise
    def probe(r: spec.RunSpec) -> float | None:
        tau, bs = r.point["objective.params.temperature"], r.point["train.batch_size"]
        if r.variant == "b" and tau == 0.1 and bs == 32:
            return None
        return {(0.1, 32): 0.6, (0.5, 32): 0.7, (0.1, 64): 0.8, (0.5, 64): 0.8}[(tau, bs)] - (
            0.05 if r.variant == "b" and tau == 0.5 and bs == 64 else 0
        )

    stats = aggregate.summarise([_result(r, probe(r)) for r in runs], sweep.metrics)
    chosen = aggregate.choose(stats, sweep.select, list(sweep.grid))
    tau = "objective.params.temperature"
    assert {p["train.batch_size"]: p[tau] for p in chosen["a"]} == {32: 0.5, 64: 0.1}  # tie: first
    assert {p["train.batch_size"]: p[tau] for p in chosen["b"]} == {32: 0.5, 64: 0.1}
    lowest = aggregate.choose(
        stats, spec.Selection("linear_probe_acc", (tau,), (0,), mode="min"), list(sweep.grid)
    )
    assert {p["train.batch_size"]: p[tau] for p in lowest["a"]} == {32: 0.1, 64: 0.1}


def test_aggregate_only_chooses_on_validation_and_reports(tmp_path: Path, capsys: Any) -> None:
    path = _write_sweep(tmp_path)
    sweep = spec.load_sweep(str(path))
    out, rep = tmp_path / "runs", tmp_path / "rep"
    for r in spec.plan_stage(sweep, spec.VALIDATION):
        probe = 0.8 if r.point["objective.params.temperature"] == 0.5 else 0.7
        _fake_run(runner.run_dir(out, r), r.cfg, probe + 0.01 * r.seed, -2.0 - r.seed)
    args = [str(path), "--out", str(out), "--report", str(rep), "--aggregate-only"]
    assert main(args) == 1  # the final runs are not there
    data = json.loads((rep / "study_unit.json").read_text())
    chosen = data["select"]["chosen"]
    assert all(p["objective.params.temperature"] == 0.5 for ps in chosen.values() for p in ps)
    assert len([r for r in data["runs"] if r["stage"] == "final"]) == 12
    val = [p for p in data["points"] if p["stage"] == "validation"]
    assert val[0]["mean"]["uniformity"] == pytest.approx(-2.5)  # seeds 0 and 1
    md = (rep / "study_unit.md").read_text()
    assert "Chosen on validation (max mean `linear_probe_acc`)" in md
    assert "a (batch_size = 32): temperature = 0.5" in md
    assert "not run" in md and (rep / "study_unit.png").is_file()
    assert "12 of 28 runs did not finish" in capsys.readouterr().err

    # a run made with another config than the sweep's is not overwritten
    run = runner.run_dir(out, spec.plan_stage(sweep, spec.VALIDATION)[0])
    cfg = config_mod.load_toml(run / "config.toml")
    cfg["optim"]["lr"] = 0.5
    (run / "config.toml").write_text(config_mod.dumps(cfg))
    assert main(args[:-1] + ["--dry-run"]) == 0
    assert "[changed]" in capsys.readouterr().out
    assert main(args[:-1]) == 2
    assert "were made with another config" in capsys.readouterr().err


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    lock = runner.SweepLock(tmp_path)
    with pytest.raises(ConfigError, match="another sweep is running"):
        runner.SweepLock(tmp_path)
    lock.release()
    runner.SweepLock(tmp_path).release()


def test_markdown_keeps_text_outside_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "study.md"
    first = report.merge_markdown(page, "Study: x", f"{report.BEGIN}\nold\n{report.END}")
    assert first.startswith("# Study: x")
    page.write_text("# Mine\n\nIntro.\n\n" + first.split("\n", 2)[2] + "\n## Findings\nKept.\n")
    again = report.merge_markdown(page, "Study: x", f"{report.BEGIN}\nnew\n{report.END}")
    assert again.startswith("# Mine\n\nIntro.") and "new" in again and "old" not in again
    assert again.rstrip().endswith("Kept.")


def test_progress_estimates_time_left() -> None:
    import io

    stream = io.StringIO()
    p = runner.Progress("x", total=5, jobs=2, stream=stream)
    p.say("[1/5] running a")
    p.durations += [100.0, 100.0]
    p.done = 2
    p.say("[3/5] running c")
    lines = stream.getvalue().splitlines()
    assert "after the first run" in lines[0]
    assert lines[1].startswith("sweep x [3/5] running c") and "~2m30s left" in lines[1]


def test_a_run_made_before_a_new_default_key_is_still_finished(tmp_path: Path) -> None:
    sweep = spec.load_sweep("temperature", "tiny")
    run = spec.plan_stage(sweep, spec.VALIDATION)[0]
    path = tmp_path / "run"
    path.mkdir()
    (path / "results.json").write_text("{}")
    older = json.loads(json.dumps(run.cfg))
    del older["optim"]["lr_batch"]  # a key the library added after the run was made
    (path / "config.toml").write_text(config_mod.dumps(older))
    assert runner.run_state(run, path) == "finished"
    older["optim"]["lr"] = 0.5  # a real difference
    (path / "config.toml").write_text(config_mod.dumps(older))
    assert runner.run_state(run, path) == "changed"
