"""``data.format`` → the loader of that format, each returning train and test splits.

============== ================================================ ==============================
format         what ``data.path`` is                             module
============== ================================================ ==============================
fashion-mnist  (``data.root``: the IDX folder; Debian's default) :mod:`.fashion_mnist`
image-folder   a folder of class subfolders                     :mod:`.image_folder`
pairs          a CSV/TSV/JSONL of (image, text[, label]) rows   :mod:`.pairs`
embeddings     a .npy/.npz/.safetensors/.pt of vectors          :mod:`.embeddings`
============== ================================================ ==============================

Adding a format is one module with a ``load_splits(...) -> Splits`` function and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from contrastkit.data.dataset import DataError, Splits


def _fashion_mnist(d: Mapping[str, Any], seed: int) -> Splits:
    from contrastkit.data import fashion_mnist

    return fashion_mnist.load_splits(d["root"] or None)


def _image_folder(d: Mapping[str, Any], seed: int) -> Splits:
    from contrastkit.data import image_folder

    return image_folder.load_splits(
        d["path"],
        test_path=d["test_path"],
        test_fraction=d["test_fraction"],
        image_size=d["image_size"],
        channels=d["channels"],
        on_bad=d["on_bad"],
        seed=seed,
    )


def _pairs(d: Mapping[str, Any], seed: int) -> Splits:
    from contrastkit.data import pairs

    return pairs.load_splits(
        d["path"],
        test_path=d["test_path"],
        test_fraction=d["test_fraction"],
        image_size=d["image_size"],
        channels=d["channels"],
        image_key=d["image_key"],
        text_key=d["text_key"],
        label_key=d["label_key"],
        on_bad=d["on_bad"],
        seed=seed,
    )


def _embeddings(d: Mapping[str, Any], seed: int) -> Splits:
    from contrastkit.data import embeddings

    return embeddings.load_splits(
        d["path"],
        test_path=d["test_path"],
        test_fraction=d["test_fraction"],
        input_key=d["input_key"],
        label_key=d["label_key"],
        paired_key=d["paired_key"],
        seed=seed,
    )


FORMATS: dict[str, Callable[[Mapping[str, Any], int], Splits]] = {
    "fashion-mnist": _fashion_mnist,
    "image-folder": _image_folder,
    "pairs": _pairs,
    "embeddings": _embeddings,
}


def load_data(data_cfg: Mapping[str, Any], seed: int) -> Splits:
    """Read the train and test splits that the ``[data]`` table describes.

    Raises:
        DataError: an unknown format or a problem with the files (naming them).
    """
    fmt = data_cfg["format"]
    if fmt not in FORMATS:
        raise DataError(f"data.format: expected one of {sorted(FORMATS)}, got {fmt!r}")
    return FORMATS[fmt](data_cfg, seed)
