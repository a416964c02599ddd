r"""Precomputed embeddings (``data.format = "embeddings"``): vectors with labels or pairs.

``data.path`` is a ``.npy`` file (the vectors alone) or a dict-like ``.npz``, ``.safetensors``
or ``.pt`` file holding:

* ``data.input_key`` (default ``x``): ``(N, D)`` the vectors the encoder reads;
* ``data.label_key`` (default ``label``): ``(N,)`` integer class ids, optional;
* ``data.paired_key`` (default none): ``(N, D2)`` a second modality paired row by row (e.g. text
  embeddings), optional — objectives with ``pairing = "text"`` contrast against it.

The test rows come from ``data.test_path`` (a file with the same keys) or a held-out
``data.test_fraction``. The default encoder for vectors is an MLP (``model.encoder = "mlp"``).

Example::

    np.savez("feats.npz", x=image_features, label=labels, text=text_features)
    contrastkit train --recipe simclr-fmnist --set data.format=embeddings \\
        --set data.path=feats.npz --set data.paired_key=text
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.dataset import ArrayDataset, DataError, Splits, stratified_split


def _load_mapping(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        if suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict):
                raise DataError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
            return obj
    except DataError:
        raise
    except Exception as err:  # a truncated or foreign file: one clear line
        raise DataError(f"{path}: cannot read ({type(err).__name__}: {err})") from err
    raise DataError(f"data.path: {path} is not a .npy, .npz, .safetensors or .pt file")


def _tensor(value: Any, path: Path, key: str) -> Tensor:
    t = torch.as_tensor(np.asarray(value)) if not isinstance(value, Tensor) else value
    return t.detach().cpu()


def _read(path: Path, input_key: str, label_key: str, paired_key: str) -> ArrayDataset:
    if not path.is_file():
        raise DataError(f"data.path: no file {str(path)!r}")
    mapping = _load_mapping(path)
    key = "" if "" in mapping else input_key
    if key not in mapping:
        raise DataError(f"{path}: no key {input_key!r} (data.input_key); keys: {sorted(mapping)}")
    x = _tensor(mapping[key], path, key)
    if x.ndim != 2 or not x.is_floating_point():
        raise DataError(
            f"{path}: {input_key!r} must be a float (N, D) array, got {x.dtype} {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(1).nonzero()[0])
        raise DataError(f"{path}: {input_key!r} row {bad} is not finite")
    labels = None
    if label_key in mapping:
        labels = _tensor(mapping[label_key], path, label_key)
        if labels.ndim != 1 or labels.is_floating_point() or labels.shape[0] != x.shape[0]:
            raise DataError(
                f"{path}: {label_key!r} (data.label_key) must be integer (N,) with N = "
                f"{x.shape[0]}, got {labels.dtype} {tuple(labels.shape)}"
            )
        if labels.numel() and int(labels.min()) < 0:
            raise DataError(f"{path}: {label_key!r} has negative class ids")
        labels = labels.long()
    paired = None
    if paired_key:
        if paired_key not in mapping:
            raise DataError(
                f"{path}: no key {paired_key!r} (data.paired_key); keys: {sorted(mapping)}"
            )
        paired = _tensor(mapping[paired_key], path, paired_key).float()
        if paired.ndim != 2 or paired.shape[0] != x.shape[0]:
            raise DataError(
                f"{path}: {paired_key!r} must be (N, D2) with N = {x.shape[0]}, "
                f"got {tuple(paired.shape)}"
            )
    return ArrayDataset(x.float().contiguous(), labels, torch.arange(x.shape[0]), paired=paired)


def load_splits(
    path: str,
    *,
    test_path: str = "",
    test_fraction: float = 0.2,
    input_key: str = "x",
    label_key: str = "label",
    paired_key: str = "",
    seed: int = 0,
) -> Splits:
    """Read the embeddings file(s).

    Raises:
        DataError: a missing or unreadable file, a missing key, wrong shapes or non-finite rows.
    """
    full = _read(Path(path), input_key, label_key, paired_key)
    if test_path:
        test = _read(Path(test_path), input_key, label_key, paired_key)
        if test.input_shape != full.input_shape:
            raise DataError(
                f"data.test_path: rows of size {test.input_shape}, training rows {full.input_shape}"
            )
        return Splits(full, test)
    tr, te = stratified_split(full.labels, len(full), test_fraction, seed)
    return Splits(full.subset(tr), full.subset(te))
