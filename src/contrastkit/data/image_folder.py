r"""A folder of images in class subfolders (``data.format = "image-folder"``).

Layouts::

    PATH/CLASS_A/*.png, PATH/CLASS_B/*.jpg, ...              one set, split by data.test_fraction
    PATH/train/CLASS_A/..., PATH/test/CLASS_A/...            train and test given

Class ids follow the sorted subfolder names (as torchvision's ``ImageFolder``); the test split
uses the training split's ids, and a test class absent from training is an error. Files are
decoded once (see :mod:`contrastkit.data.images`).

Example::

    contrastkit train --recipe simclr-fmnist --set data.format=image-folder \\
        --set data.path=my_photos --set data.image_size=32 --set data.channels=3
"""

from __future__ import annotations

from pathlib import Path

import torch

from contrastkit.data.dataset import ArrayDataset, DataError, Splits, stratified_split
from contrastkit.data.images import IMAGE_SUFFIXES, decode_images


def _scan(folder: Path, class_names: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"data.path: {folder} has no class subfolders (expected PATH/CLASS/*.png)")
    names = class_names if class_names is not None else classes
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise DataError(f"{folder}: classes {unknown} do not appear in the training folder")
    paths, labels = [], []
    for c in classes:
        files = sorted(
            f for f in (folder / c).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        )
        paths += files
        labels += [names.index(c)] * len(files)
    if not paths:
        raise DataError(f"data.path: no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return paths, labels, names


def _read(
    folder: Path, class_names: list[str] | None, size: int, channels: int, on_bad: str
) -> ArrayDataset:
    paths, labels, names = _scan(folder, class_names)
    where = [str(p) for p in paths]
    images, kept, skipped = decode_images(paths, where, size=size, channels=channels, on_bad=on_bad)
    return ArrayDataset(
        images,
        torch.tensor([labels[i] for i in kept], dtype=torch.long),
        torch.tensor(kept, dtype=torch.long),
        class_names=tuple(names),
        skipped=skipped,
    )


def load_splits(
    path: str,
    *,
    test_path: str = "",
    test_fraction: float = 0.2,
    image_size: int = 32,
    channels: int = 3,
    on_bad: str = "error",
    seed: int = 0,
) -> Splits:
    """Read an image folder (see the module docstring for the layouts).

    Raises:
        DataError: a missing folder, no classes or images, or an unreadable file (naming it).
    """
    root = Path(path)
    if not path or not root.is_dir():
        raise DataError(f"data.path: {path!r} is not a folder")
    if test_path:
        train = _read(root, None, image_size, channels, on_bad)
        test_dir = Path(test_path)
        if not test_dir.is_dir():
            raise DataError(f"data.test_path: {test_path!r} is not a folder")
        test = _read(test_dir, list(train.class_names), image_size, channels, on_bad)
        return Splits(train, test)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _read(root / "train", None, image_size, channels, on_bad)
        test = _read(root / "test", list(train.class_names), image_size, channels, on_bad)
        return Splits(train, test)
    full = _read(root, None, image_size, channels, on_bad)
    tr, te = stratified_split(full.labels, len(full), test_fraction, seed)
    return Splits(full.subset(tr), full.subset(te))
