"""A CSV or JSONL table of (image path, text[, label]) pairs (``data.format = "pairs"``).

Each row names an image file (relative paths are relative to the table's folder), its text and
optionally a class label (an integer, or a name: names get ids in sorted order) and a ``split``
(``train`` / ``test``). Column names are ``data.image_key``, ``data.text_key`` and
``data.label_key`` (default ``image``, ``text``, ``label``). Without a ``split`` column the test
rows are ``data.test_path`` (a second table) or a ``data.test_fraction`` held out with the seed.

A row with a missing field, bad JSON or an unreadable image raises
:class:`~contrastkit.data.dataset.DataError` naming the file and its line.

Example ``pairs.csv``::

    image,text,label
    img/0001.png,"a red dress with long sleeves",dress
    img/0002.png,"a dark leather ankle boot",boot
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from contrastkit.data.dataset import ArrayDataset, DataError, Splits, stratified_split
from contrastkit.data.images import decode_images


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for each row of a CSV or JSONL file."""
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            if path.suffix.lower() in (".jsonl", ".ndjson"):
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path} line {line_no}: invalid JSON ({err.msg})") from err
                    if not isinstance(record, dict):
                        raise DataError(f"{path} line {line_no}: expected a JSON object")
                    out.append((line_no, record))
            elif path.suffix.lower() in (".csv", ".tsv"):
                reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
                for record in reader:
                    if None in record:
                        raise DataError(f"{path} line {reader.line_num}: more fields than columns")
                    out.append((reader.line_num, dict(record)))
            else:
                raise DataError(f"data.path: {path} is not a .csv, .tsv or .jsonl file")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from err
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def _field(path: Path, line: int, record: dict[str, Any], key: str) -> Any:
    value = record.get(key)
    if value is None or value == "":
        raise DataError(f"{path} line {line}: missing {key!r} (columns: {sorted(record)})")
    return value


def _table(
    path: Path, keys: dict[str, str]
) -> tuple[list[Path], list[str], list[str], list[str | None], list[Any]]:
    rows = _rows(path)
    has_text = any(keys["text"] in r for _, r in rows)
    has_label = any(keys["label"] in r for _, r in rows)
    paths, where, texts, splits, labels = [], [], [], [], []
    for line, r in rows:
        image = Path(str(_field(path, line, r, keys["image"])))
        paths.append(image if image.is_absolute() else path.parent / image)
        where.append(f"{path} line {line}")
        texts.append(str(_field(path, line, r, keys["text"])) if has_text else "")
        labels.append(_field(path, line, r, keys["label"]) if has_label else None)
        split = r.get("split")
        if split not in (None, "", "train", "test"):
            raise DataError(f"{path} line {line}: split must be 'train' or 'test', got {split!r}")
        splits.append(split or None)
    return paths, where, (texts if has_text else []), splits, labels


def _label_ids(labels: list[Any], where: list[str]) -> tuple[list[int], tuple[str, ...]]:
    if all(isinstance(v, int) or (isinstance(v, str) and v.lstrip("-").isdigit()) for v in labels):
        ids = [int(v) for v in labels]
        for w, i in zip(where, ids, strict=True):
            if i < 0:
                raise DataError(f"{w}: label must be >= 0, got {i}")
        return ids, ()
    names = sorted({str(v) for v in labels})
    return [names.index(str(v)) for v in labels], tuple(names)


def load_splits(
    path: str,
    *,
    test_path: str = "",
    test_fraction: float = 0.2,
    image_size: int = 32,
    channels: int = 3,
    image_key: str = "image",
    text_key: str = "text",
    label_key: str = "label",
    on_bad: str = "error",
    seed: int = 0,
) -> Splits:
    """Read the pairs table(s) and decode their images.

    Raises:
        DataError: a missing file, a bad row or an unreadable image (naming file and line).
    """
    keys = {"image": image_key, "text": text_key, "label": label_key}
    tables = [Path(path)] + ([Path(test_path)] if test_path else [])
    for t in tables:
        if not t.is_file():
            raise DataError(f"data.{'path' if t == tables[0] else 'test_path'}: no file {str(t)!r}")
    parts = [_table(t, keys) for t in tables]
    paths = [p for part in parts for p in part[0]]
    where = [w for part in parts for w in part[1]]
    texts = [x for part in parts for x in part[2]]
    if texts and len(texts) != len(paths):
        raise DataError(f"data.test_path: {test_path} has no {text_key!r} column")
    splits = parts[0][3] + (["test"] * len(parts[1][0]) if test_path else [])
    raw_labels = [v for part in parts for v in part[4]]
    labels = None
    names: tuple[str, ...] = ()
    if any(v is not None for v in raw_labels):
        if any(v is None for v in raw_labels):
            raise DataError(f"data.label_key: some rows have {label_key!r} and others do not")
        ids, names = _label_ids(raw_labels, where)
        labels = torch.tensor(ids, dtype=torch.long)
    images, kept, skipped = decode_images(
        paths, where, size=image_size, channels=channels, on_bad=on_bad
    )
    keep = torch.tensor(kept, dtype=torch.long)
    full = ArrayDataset(
        images,
        labels[keep] if labels is not None else None,
        keep,
        texts=[texts[i] for i in kept] if texts else None,
        class_names=names,
        skipped=skipped,
    )
    split_of = [splits[i] for i in kept]
    if test_path or any(s is not None for s in split_of):
        test_rows = [j for j, s in enumerate(split_of) if s == "test"]
        train_rows = [j for j, s in enumerate(split_of) if s != "test"]
        if not test_rows or not train_rows:
            raise DataError(f"{path}: the split column leaves the train or the test rows empty")
        return Splits(full.subset(train_rows), full.subset(test_rows))
    tr, te = stratified_split(full.labels, len(full), test_fraction, seed)
    return Splits(full.subset(tr), full.subset(te))
