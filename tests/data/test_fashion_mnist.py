from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data.fashion_mnist import (
    CLASS_NAMES,
    DataNotFoundError,
    FashionMNIST,
    load_fashion_mnist,
)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(
        ">" + "I" * array.ndim, *array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_root(tmp_path: Path, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    for split in ("train", "t10k"):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    return images, labels


def test_idx_reader_roundtrip_and_index(tmp_path: Path) -> None:
    images, labels = _fake_root(tmp_path)
    x, y = load_fashion_mnist("train", tmp_path)
    assert torch.equal(x, torch.from_numpy(images)) and torch.equal(
        y, torch.from_numpy(labels).long()
    )
    ds = FashionMNIST.load("train", tmp_path)
    img, lab, idx = ds[3]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32
    assert torch.allclose(img[0], torch.from_numpy(images[3]).float() / 255)
    assert int(lab) == labels[3] and idx == 3


def test_env_var_overrides_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_root(tmp_path, n=7)
    monkeypatch.setenv("CONTRASTKIT_FMNIST_DIR", str(tmp_path))
    assert load_fashion_mnist("test")[0].shape == (7, 28, 28)


def test_missing_data_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path / "nowhere")


def test_bad_split_and_truncated_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val", tmp_path)
    _fake_root(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_fashion_mnist("train", tmp_path)


def test_real_fashion_mnist() -> None:
    try:
        x, y = load_fashion_mnist("train")
        xt, yt = load_fashion_mnist("test")
    except DataNotFoundError as err:
        pytest.skip(f"Fashion-MNIST not installed: {err}")
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert torch.equal(torch.bincount(y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(yt), torch.full((10,), 1000))
    assert len(CLASS_NAMES) == 10
    ds = FashionMNIST.load("test", indices=torch.tensor([5, 9]))
    b = ds.batch(torch.tensor([1, 0]))
    assert b.inputs.shape == (2, 1, 28, 28) and b.paired is None and b.texts is None
    assert torch.equal(b.labels, yt[[9, 5]]) and torch.equal(b.index, torch.tensor([1, 0]))
    assert torch.equal(ds.source_index, torch.tensor([5, 9]))
