"""``contrastkit bench objectives``: every implementation computes its objective; the page and
plot are written; skips say why."""

from __future__ import annotations

import json

import pytest

from contrastkit.bench import objectives
from contrastkit.bench.objectives import OBJECTIVES, run_config
from contrastkit.bench.objectives_report import render, roofline_share, write_plot


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_implementations_compute_the_same_loss_as_contrastkit(name):
    objective = OBJECTIVES[name]
    result = run_config(name, 24, 8, list(objective.impls), min_rounds=1, max_rounds=1)
    impls = result["impls"]
    assert all("error" not in r for r in impls.values()), impls
    ours = impls["contrastkit"]["loss"]
    for impl in objective.same_value:
        assert impls[impl]["loss"] == pytest.approx(ours, rel=2e-5), impl
    for impl in objective.impls:
        assert impls[impl]["median_s"] > 0 and len(impls[impl]["times_s"]) == 1
    assert set(objective.peers) <= set(objective.impls)


def test_naive_versions_are_not_vacuous():
    # a different temperature must change the naive loss: it really depends on its inputs
    inputs = OBJECTIVES["NT-Xent"].inputs(16, 4, objectives.torch.Generator().manual_seed(0))
    first = float(OBJECTIVES["NT-Xent"].impls["naive-dense"]()(inputs).detach())
    inputs["b"] = inputs["b"].detach() * -1
    inputs["b"].requires_grad_()
    assert float(OBJECTIVES["NT-Xent"].impls["naive-dense"]()(inputs).detach()) != first


def test_prediction_drops_slow_dense_implementations_first():
    clip = OBJECTIVES["CLIP"]
    prev = {
        "rows": 1024,
        "cols": 1024,
        "impls": {"contrastkit": {"median_s": 1.0}, "naive-dense": {"median_s": 3.0}},
    }
    # 4× the pairs, 4 steps each: 16 s for ours, 48 s for the naive one
    assert objectives._predict_s(prev, clip, 2048, ["contrastkit"]) == pytest.approx(16.0)
    both = objectives._predict_s(prev, clip, 2048, ["contrastkit", "naive-dense"])
    assert both == pytest.approx(64.0)
    assert objectives._predict_s(None, clip, 2048, ["contrastkit"]) == 0.0


def test_run_objective_skips_dense_over_the_memory_cap_with_a_reason(capsys):
    objectives.run_objective("InfoNCE", [32], 4, max_dense_gib=1e-9, max_config_s=60.0)
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(record["skipped"]) == {"naive-dense", "info-nce-pytorch"}
    assert all(v.startswith("skipped: needs") for v in record["skipped"].values())
    assert set(record["result"]["impls"]) == {"contrastkit"}


def _payload():
    result = {
        "objective": "CLIP",
        "B": 4096,
        "d": 128,
        "rows": 4096,
        "cols": 4096,
        "matmul_gflops": 100.0,
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 1.0, 1.0],
        "rounds": 3,
        "threads": 1,
        "impls": {
            "contrastkit": {"median_s": 0.2, "peak_extra_mib": 50.0, "times_s": [0.2]},
            "naive-dense": {"median_s": 0.5, "peak_extra_mib": 300.0, "times_s": [0.5]},
            "open_clip": {"median_s": 0.3, "peak_extra_mib": 320.0, "times_s": [0.3]},
        },
    }
    meta = {
        "machine": "test",
        "torch": "x",
        "date": "now",
        "command": "contrastkit bench objectives",
        "dim": 128,
        "threads": 1,
        "wall_s": 60.0,
    }
    skipped = {"info-nce-pytorch": "skipped: needs ~9 GiB"}
    configs = [
        {"objective": "CLIP", "batch": 4096, "skipped": skipped, "note": "", "result": result}
    ]
    return {"meta": meta, "configs": configs}


def test_roofline_share_is_minimal_matmul_time_over_measured_time():
    payload = _payload()
    result = payload["configs"][0]["result"]
    expected = 3 * 2 * 4096 * 4096 * 128 / 100e9 / 0.2
    assert roofline_share(result, "contrastkit") == pytest.approx(expected)


def test_page_states_ratios_skips_and_missed_targets(tmp_path):
    page = render(_payload())
    assert "| 4096 | 4096×4096 | 200 ms | 50 MiB | 500 ms | 300 MiB |" in page
    assert "skipped: needs ~9 GiB" in page
    assert "0.67× (open_clip)" in page and "0.40×" in page  # vs peer, vs naive
    # 0.67 > 0.5: missed, with the reason (the peer's own roofline share)
    assert "| CLIP | missed (B=4096: 0.67×); open_clip itself runs at" in page
    write_plot(_payload(), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_cli_writes_page_json_and_plot(tmp_path):
    from contrastkit.bench import cli

    argv = ["objectives", "--objectives", "InfoNCE", "--batch-sizes", "16", "--dim", "4"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "objectives_bench.json").read_text())
    (config,) = payload["configs"]
    assert set(config["result"]["impls"]) == set(OBJECTIVES["InfoNCE"].impls)
    assert "| 16 | 16×16 |" in (tmp_path / "objectives_bench.md").read_text()
    assert (tmp_path / "objectives_scaling.png").exists()
