"""Fashion-MNIST read offline from the Debian package ``dataset-fashion-mnist``.

The four IDX files (``train-images-idx3-ubyte.gz`` ...) are read once into ``uint8`` tensors; the
dataset yields ``(image, label, index)`` so that stateful objectives (SogCLR, iSogCLR, memory
queues) can address their per-sample state by dataset index.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.dataset import ArrayDataset, DataError, Splits

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "CONTRASTKIT_FMNIST_DIR"

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

_FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
_CACHE: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}


class DataNotFoundError(DataError, FileNotFoundError):
    """Raised when the Fashion-MNIST files are not where they were looked for."""


def resolve_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data folder: ``root``, else ``$CONTRASTKIT_FMNIST_DIR``, else Debian's."""
    if root is not None and str(root) != "":
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_DIR


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:  # not gzip, or a gzip stream cut short
        raise DataError(f"{path}: not a readable gzip file ({err}); reinstall the data") from err
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is not an unsigned-byte IDX file (header {data[:4]!r})")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {array.size} bytes")
    return array.reshape(shape)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[Tensor, Tensor]:
    """Load one split as ``(images uint8 (N, 28, 28), labels int64 (N,))``.

    Args:
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000 images).
        root: folder holding the IDX ``.gz`` files; defaults to ``$CONTRASTKIT_FMNIST_DIR`` or
            ``/usr/share/datasets/fashion-mnist``.

    Raises:
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
        DataNotFoundError: a file is missing; the message says how to install the data.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = resolve_dir(root)
    key = (str(folder.resolve()), split)
    if key in _CACHE:
        return _CACHE[key]
    paths = [folder / _FILES[(split, kind)] for kind in ("images", "labels")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST not found: missing {', '.join(missing)}. Install it with "
            "`sudo apt-get install dataset-fashion-mnist` (or `make data`), or point "
            f"data.root / ${ENV_VAR} at a folder holding the four IDX .gz files."
        )
    images = torch.from_numpy(_read_idx(paths[0]).copy())
    labels = torch.from_numpy(_read_idx(paths[1]).astype(np.int64))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{folder}: inconsistent IDX files, images {tuple(images.shape)}, "
            f"labels {tuple(labels.shape)}"
        )
    _CACHE[key] = (images, labels)
    return images, labels


class FashionMNIST(ArrayDataset):
    """A Fashion-MNIST split as an :class:`~contrastkit.data.dataset.ArrayDataset`.

    ``inputs`` are ``uint8 (N, 1, 28, 28)``; ``dataset[i]`` is ``(image float32 (1, 28, 28) in
    [0, 1], label, i)``, ``i`` being the position in this dataset (the address of per-sample state
    for stateful objectives).
    """

    @classmethod
    def load(
        cls,
        split: str = "train",
        root: str | os.PathLike[str] | None = None,
        indices: Tensor | None = None,
    ) -> FashionMNIST:
        """Load a split, optionally keeping only ``indices`` (positions in the split)."""
        images, labels = load_fashion_mnist(split, root)
        if indices is None:
            indices = torch.arange(labels.shape[0])
        indices = torch.as_tensor(indices, dtype=torch.long)
        return cls(images[indices].unsqueeze(1), labels[indices], indices, class_names=CLASS_NAMES)


def load_splits(root: str | os.PathLike[str] | None = None) -> Splits:
    """The official train (60 000) and test (10 000) splits."""
    return Splits(FashionMNIST.load("train", root), FashionMNIST.load("test", root))
