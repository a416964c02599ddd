"""The data formats: image folder, CSV/JSONL pairs, embeddings — read right, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import embeddings, image_folder, pairs
from contrastkit.data.dataset import DataError, stratified_split

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRASTKIT_CACHE_DIR", str(tmp_path / "cache"))


def _png(path: Path, value: int, size: int = 12, rgb: bool = False) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size, 3) if rgb else (size, size), value, dtype=np.uint8)
    arr[0, 0] = 255 - value  # not constant
    PIL.fromarray(arr).save(path)
    return arr


def _folder(root: Path, classes: dict[str, int], per_class: int = 5) -> None:
    for name, value in classes.items():
        for i in range(per_class):
            _png(root / name / f"{i:02d}.png", value + i)


def test_image_folder_classes_values_and_split(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"cat": 10, "dog": 100, "emu": 200}, per_class=5)
    train, test = image_folder.load_splits(
        str(tmp_path / "imgs"), test_fraction=0.4, image_size=12, channels=1, seed=0
    )
    assert train.class_names == test.class_names == ("cat", "dog", "emu")
    assert len(train) == 9 and len(test) == 6  # 2 of 5 held out per class
    assert torch.equal(torch.bincount(test.labels), torch.tensor([2, 2, 2]))  # type: ignore[arg-type]
    assert train.inputs.dtype == torch.uint8 and train.input_shape == (1, 12, 12)
    # pixel values survive (no resize at the native size): each image's fill is its class base + i
    fills = train.inputs[:, 0, 5, 5].long()
    base = torch.tensor([10, 100, 200])[train.labels]  # type: ignore[index]
    assert bool(((fills - base) >= 0).all() and ((fills - base) < 5).all())
    # another seed holds out other rows
    _, other = image_folder.load_splits(
        str(tmp_path / "imgs"), test_fraction=0.4, image_size=12, channels=1, seed=1
    )
    assert not torch.equal(other.source_index, test.source_index)


def test_image_folder_train_test_layout_rgb_resize(tmp_path: Path) -> None:
    _folder(tmp_path / "d" / "train", {"a": 0, "b": 50}, per_class=3)
    _folder(tmp_path / "d" / "test", {"b": 60}, per_class=2)
    train, test = image_folder.load_splits(str(tmp_path / "d"), image_size=8, channels=3)
    assert train.input_shape == (3, 8, 8) and len(train) == 6 and len(test) == 2
    assert test.labels.tolist() == [1, 1]  # type: ignore[union-attr]  # ids of the train split
    _folder(tmp_path / "e" / "train", {"a": 0}, per_class=2)
    _folder(tmp_path / "e" / "test", {"zebra": 0}, per_class=2)
    with pytest.raises(DataError, match="zebra"):
        image_folder.load_splits(str(tmp_path / "e"), image_size=8)


def test_bad_image_is_named_or_skipped_and_listed(tmp_path: Path) -> None:
    _folder(tmp_path / "imgs", {"a": 10, "b": 90}, per_class=4)
    bad = tmp_path / "imgs" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(DataError, match=r"broken\.png.*cannot read image"):
        image_folder.load_splits(str(tmp_path / "imgs"), image_size=12, channels=1)
    train, test = image_folder.load_splits(
        str(tmp_path / "imgs"), image_size=12, channels=1, on_bad="skip"
    )
    assert len(train) + len(test) == 8  # the 8 good images, none lost
    assert len(train.skipped) == 1 and "broken.png" in train.skipped[0]
    # decoded once: the cache serves the second read with the same result
    again, _ = image_folder.load_splits(
        str(tmp_path / "imgs"), image_size=12, channels=1, on_bad="skip"
    )
    assert torch.equal(again.inputs, train.inputs) and again.skipped == train.skipped


def test_pairs_csv_and_jsonl(tmp_path: Path) -> None:
    rows = []
    for i in range(10):
        label = "shoe" if i % 2 else "bag"
        _png(tmp_path / "img" / f"{i}.png", 20 * i)
        rows.append({"image": f"img/{i}.png", "text": f"a {label} number {i}", "label": label})
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(
        "image,text,label\n" + "".join(f'{r["image"]},"{r["text"]}",{r["label"]}\n' for r in rows)
    )
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for path in (csv_path, jsonl):
        train, test = pairs.load_splits(str(path), test_fraction=0.2, image_size=12, channels=1)
        assert len(train) == 8 and len(test) == 2
        assert train.class_names == ("bag", "shoe")
        for ds in (train, test):
            assert ds.texts is not None
            for text, label, src in zip(
                ds.texts, ds.labels.tolist(), ds.source_index.tolist(), strict=True
            ):  # type: ignore[union-attr]
                assert text == rows[src]["text"] and ds.class_names[label] == rows[src]["label"]


def test_pairs_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", 10)
    p = tmp_path / "p.jsonl"
    p.write_text('{"image": "a.png", "text": "x"}\n{"image": "a.png", "text": \n')
    with pytest.raises(DataError, match=r"p\.jsonl line 2: invalid JSON"):
        pairs.load_splits(str(p), image_size=12)
    p.write_text('{"image": "a.png", "text": "x"}\n{"image": "a.png"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl line 2: missing 'text'"):
        pairs.load_splits(str(p), image_size=12)
    c = tmp_path / "p.csv"
    c.write_text("image,text\na.png,x\nmissing.png,y\n")
    with pytest.raises(
        DataError, match=r"p\.csv line 3: image file .*missing\.png.* does not exist"
    ):
        pairs.load_splits(str(c), image_size=12)
    c.write_text("image,text,split\na.png,x,train\na.png,y,val\n")
    with pytest.raises(DataError, match="line 3: split must be"):
        pairs.load_splits(str(c), image_size=12)


def test_embeddings_npz_safetensors_npy(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    x, y, t = torch.randn(50, 6, generator=g), torch.arange(50) % 5, torch.randn(50, 4, generator=g)
    np.savez(tmp_path / "e.npz", x=x.numpy(), label=y.numpy(), text=t.numpy())
    save_file({"x": x, "label": y, "text": t}, str(tmp_path / "e.safetensors"))
    for name in ("e.npz", "e.safetensors"):
        train, test = embeddings.load_splits(
            str(tmp_path / name), test_fraction=0.2, paired_key="text"
        )
        assert len(train) == 40 and len(test) == 10 and train.input_shape == (6,)
        for ds in (train, test):
            assert torch.equal(ds.inputs, x[ds.source_index])
            assert torch.equal(ds.labels, y[ds.source_index])  # type: ignore[arg-type]
            assert torch.equal(ds.paired, t[ds.source_index])  # type: ignore[arg-type]
    np.save(tmp_path / "e.npy", x.numpy())
    train, _ = embeddings.load_splits(str(tmp_path / "e.npy"))
    assert train.labels is None and train.paired is None


def test_embeddings_bad_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", feats=np.zeros((4, 3), np.float32))
    with pytest.raises(DataError, match=r"no key 'x' \(data.input_key\); keys: \['feats'\]"):
        embeddings.load_splits(str(tmp_path / "e.npz"))
    bad = np.zeros((4, 3), np.float32)
    bad[2, 1] = np.nan
    np.savez(tmp_path / "n.npz", x=bad)
    with pytest.raises(DataError, match="row 2 is not finite"):
        embeddings.load_splits(str(tmp_path / "n.npz"))
    np.savez(tmp_path / "l.npz", x=np.zeros((4, 3), np.float32), label=np.zeros(5, np.int64))
    with pytest.raises(DataError, match="data.label_key"):
        embeddings.load_splits(str(tmp_path / "l.npz"))
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"t\.npz: cannot read"):
        embeddings.load_splits(str(tmp_path / "t.npz"))


def test_stratified_split_keeps_every_class() -> None:
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 2)
    tr, te = stratified_split(labels, 15, 0.2, seed=0)
    assert sorted(tr.tolist() + te.tolist()) == list(range(15))
    assert set(labels[te].tolist()) == {0, 1, 2} and set(labels[tr].tolist()) == {0, 1, 2}
    with pytest.raises(DataError, match="data.test_fraction"):
        stratified_split(labels, 15, 1.5, seed=0)
