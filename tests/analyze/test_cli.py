from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit import metrics as M
from contrastkit.analyze.cli import main
from contrastkit.analyze.report import PLOTS, flatten, format_value


def _data(n: int = 150, d: int = 12, classes: int = 4, seed: int = 0):  # type: ignore[no-untyped-def]
    g = np.random.default_rng(seed)
    centres = 2 * g.normal(size=(classes, d))
    y = g.integers(0, classes, n)
    x = (centres[y] + g.normal(size=(n, d))).astype(np.float32)
    return x, y


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv + ["--quiet"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _check_report(out: Path, expected_plots: set[str]) -> dict:  # type: ignore[type-arg]
    metrics = json.loads((out / "metrics.json").read_text())
    page = (out / "report.html").read_text()
    # every expected plot is embedded as a decodable PNG, and nothing is linked externally
    figures = dict(
        re.findall(
            r"<figure id='plot-([a-z_]+)'><img alt='[^']*' "
            r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'>",
            page,
        )
    )
    assert set(figures) == expected_plots
    for b64 in figures.values():
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src='http" not in page and 'src="http' not in page
    # every metric of the JSON is in the page, with its value
    for key, value in flatten(metrics).items():
        section, name = key.split(".", 1)
        row = (
            f"<tr id='m-{html.escape(section)}.{html.escape(name)}'><td>{html.escape(name)}</td>"
            f"<td class='v'>{html.escape(format_value(value))}</td></tr>"
        )
        assert row in page, key
    return metrics  # type: ignore[no-any-return]


def test_labelled_npy_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "rep"
    rc, stdout, _ = _run(
        [
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.npy"),
            "--out",
            str(out),
            "--knn-k",
            "20",
        ],
        capsys,
    )
    assert rc == 0 and "report.html" in stdout
    m = _check_report(out, set(PLOTS))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    # the JSON holds the values of the public metric functions
    assert m["geometry"]["uniformity"] == pytest.approx(M.uniformity(xt))
    assert m["geometry"]["tolerance"] == pytest.approx(M.tolerance(xt, yt))
    assert m["geometry"]["effective_rank"] == pytest.approx(M.spectrum(xt).effective_rank)
    ret = M.retrieval_metrics(xt, query_labels=yt, ks=(1, 5, 10))
    assert m["labels"]["retrieval_map@r"] == pytest.approx(ret.map_at_r)
    assert m["labels"]["auc_global"] == pytest.approx(M.auc(xt, query_labels=yt).global_auc)
    tr, te = M.train_test_indices(yt, test_fraction=0.2, seed=0)
    assert m["classification"]["knn_accuracy"] == pytest.approx(
        M.knn_accuracy(xt[tr], yt[tr], xt[te], yt[te], k=20)
    )
    assert m["classification"]["linear_probe_accuracy"] > 0.8
    assert set(m["hardness"]) >= {
        f"tau={t}_effective_negatives" for t in ("0.05", "0.1", "0.2", "0.5")
    }


def test_two_modalities_pt_and_safetensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import save_file

    x, _ = _data(n=100)
    a = torch.from_numpy(x)
    shift = torch.zeros(a.shape[1])
    shift[0] = 3.0
    b = a + 0.3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0)) + shift
    torch.save({"emb": a}, tmp_path / "a.pt")
    save_file({"text": b.contiguous(), "other": torch.zeros(2)}, str(tmp_path / "b.safetensors"))
    out = tmp_path / "gap"
    rc, _, err = _run(
        [
            str(tmp_path / "a.pt"),
            "--second",
            str(tmp_path / "b.safetensors"),
            "--second-key",
            "text",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, err
    m = _check_report(out, set(PLOTS))
    assert m["cross_modal"]["alignment"] == pytest.approx(M.alignment(a, b))
    assert m["modality_gap"]["centroid_distance"] == pytest.approx(M.centroid_distance(a, b))
    sep = M.linear_separability(a, b, seed=0)
    assert m["modality_gap"]["linear_separability"] == pytest.approx(sep)
    assert sep > 0.7
    assert m["cross_modal"]["retrieval_x_to_second_recall@1"] == pytest.approx(
        M.retrieval_metrics(a, b, ks=(1,)).recall[1]
    )


def test_unlabelled_single_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = _data(n=80)
    np.save(tmp_path / "x.npy", x)
    rc, _, _ = _run([str(tmp_path / "x.npy"), "--out", str(tmp_path / "r")], capsys)
    assert rc == 0
    m = _check_report(
        tmp_path / "r", {"similarity_histogram", "spectrum", "hardness", "projection"}
    )
    assert "labels" not in m and "cross_modal" not in m


def test_subsampling_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data(n=200)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.txt", y, fmt="%d")
    rc, _, _ = _run(
        [
            str(tmp_path / "x.npy"),
            "--labels",
            str(tmp_path / "y.txt"),
            "--max-samples",
            "60",
            "--knn-k",
            "10",
            "--out",
            str(tmp_path / "r"),
            "--no-html",
        ],
        capsys,
    )
    assert rc == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["inputs"]["n"] == 200 and m["inputs"]["rows_used_for_pairwise_metrics"] == 60
    assert not (tmp_path / "r" / "report.html").exists()


def test_top_level_command_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.cli import main as top

    x, _ = _data(n=40)
    np.save(tmp_path / "x.npy", x)
    assert (
        top(
            [
                "analyze",
                str(tmp_path / "x.npy"),
                "--out",
                str(tmp_path / "r"),
                "--quiet",
                "--no-html",
            ]
        )
        == 0
    )
    assert (tmp_path / "r" / "metrics.json").exists()


def _expect_error(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    assert "Traceback" not in err
    assert err.startswith("contrastkit analyze: error:")
    for needle in needles:
        assert needle in err, err


def test_bad_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _data(n=50)
    xp, yp = tmp_path / "x.npy", tmp_path / "short.npy"
    np.save(xp, x)
    np.save(yp, y[:40])
    out = ["--out", str(tmp_path / "r")]
    # mismatched lengths
    _expect_error([str(xp), "--labels", str(yp), *out], capsys, "short.npy", "40 rows", "50")
    # NaN rows
    bad = x.copy()
    bad[[3, 7]] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    _expect_error([str(tmp_path / "nan.npy"), *out], capsys, "nan.npy", "NaN", "rows 3, 7")
    # corrupt file
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    _expect_error([str(tmp_path / "junk.npy"), *out], capsys, "cannot read embeddings", "junk.npy")
    # missing file, unsupported type, wrong rank
    _expect_error([str(tmp_path / "missing.npy"), *out], capsys, "missing.npy", "no such file")
    (tmp_path / "x.csv").write_text("1,2\n")
    _expect_error([str(tmp_path / "x.csv"), *out], capsys, "x.csv", "unsupported")
    np.save(tmp_path / "vec.npy", x[:, 0])
    _expect_error([str(tmp_path / "vec.npy"), *out], capsys, "vec.npy", "2-D")
    # second modality with another length / dimension
    np.save(tmp_path / "b.npy", x[:30])
    _expect_error([str(xp), "--second", str(tmp_path / "b.npy"), *out], capsys, "b.npy", "30 rows")
    np.save(tmp_path / "b2.npy", x[:, :5])
    _expect_error(
        [str(xp), "--second", str(tmp_path / "b2.npy"), *out], capsys, "b2.npy", "dimension"
    )
    # non-integral labels, several tensors without --key
    np.save(tmp_path / "fy.npy", y.astype(float) + 0.5)
    _expect_error(
        [str(xp), "--labels", str(tmp_path / "fy.npy"), *out], capsys, "fy.npy", "integer"
    )
    torch.save({"a": torch.zeros(3, 2), "b": torch.zeros(3, 2)}, tmp_path / "two.pt")
    _expect_error([str(tmp_path / "two.pt"), *out], capsys, "two.pt", "--key")
    # a bad option value
    assert main([str(xp), "--ks", "0,1", "--quiet"]) == 2
    capsys.readouterr()
