"""Loading embeddings and labels from ``.npy``, ``.pt`` and ``.safetensors`` (labels also ``.txt``).

Every problem raises :class:`InputError` with a message that names the input file, so that the
command line can print it and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class InputError(ValueError):
    """A user-supplied file cannot be used; the message names the file and the problem."""


def _from_mapping(mapping: dict[str, object], path: Path, what: str, key: str | None) -> object:
    if key is not None:
        if key not in mapping:
            raise InputError(f"{what} '{path}': no key {key!r} (keys: {sorted(mapping)})")
        return mapping[key]
    tensors = {k: v for k, v in mapping.items() if isinstance(v, (torch.Tensor, np.ndarray))}
    if len(tensors) != 1:
        raise InputError(
            f"{what} '{path}' holds {len(tensors)} tensors {sorted(tensors)}; choose one with --key"
        )
    return next(iter(tensors.values()))


def _read_array(path: Path, what: str, key: str | None) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{what} '{path}': no such file")
    suffix = path.suffix.lower()
    obj: object
    try:
        if suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                obj = _from_mapping({k: npz[k] for k in npz.files}, path, what, key)
        elif suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = _from_mapping(obj, path, what, key)
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = _from_mapping(dict(load_file(str(path))), path, what, key)
        elif suffix in (".txt", ".csv", ".tsv") and what == "labels":
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            try:
                obj = np.array([int(ln) for ln in lines], dtype=np.int64)
            except ValueError:
                names = sorted(set(lines))
                index = {n: i for i, n in enumerate(names)}
                obj = np.array([index[ln] for ln in lines], dtype=np.int64)
        else:
            raise InputError(
                f"{what} '{path}': unsupported file type {suffix!r} "
                "(expected .npy, .npz, .pt, .safetensors, or .txt for labels)"
            )
    except InputError:
        raise
    except Exception as err:  # any parser failure becomes a clear message
        raise InputError(f"cannot read {what} '{path}': {type(err).__name__}: {err}") from err
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu()
        if obj.dtype == torch.bfloat16:
            obj = obj.float()
        obj = obj.numpy()
    if not isinstance(obj, np.ndarray):
        raise InputError(f"{what} '{path}' holds a {type(obj).__name__}, not an array/tensor")
    return obj


def load_embeddings(
    path: str | Path, *, key: str | None = None, what: str = "embeddings"
) -> Tensor:
    """Load a ``(n, d)`` float embedding matrix and check it.

    Args:
        path: ``.npy``, ``.npz``, ``.pt``/``.pth`` (a tensor or a dict of tensors) or
            ``.safetensors`` file.
        key: which entry of a dict/npz/safetensors file to use (needed when there are several).
        what: name of the input in error messages.

    Returns:
        A float32 (float64 kept) CPU tensor ``(n, d)``.

    Raises:
        InputError: unreadable file, not 2-D, not numeric, fewer than 2 rows, NaN/inf rows.
    """
    p = Path(path)
    arr = _read_array(p, what, key)
    if arr.ndim != 2:
        raise InputError(f"{what} '{p}': expected a 2-D (n, d) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{what} '{p}': expected numbers, got dtype {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise InputError(f"{what} '{p}': need at least 2 rows and 1 column, got {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    x = x.double() if x.dtype == torch.float64 else x.float()
    bad = ~torch.isfinite(x).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        shown = ", ".join(str(int(r)) for r in rows[:5])
        raise InputError(
            f"{what} '{p}': {len(rows)} row(s) contain NaN or inf (rows {shown}"
            f"{', ...' if len(rows) > 5 else ''})"
        )
    zero = x.norm(dim=1) == 0
    if bool(zero.any()):
        raise InputError(
            f"{what} '{p}': row {int(torch.nonzero(zero)[0, 0])} is all zeros (cannot normalise)"
        )
    return x


def load_labels(path: str | Path, n: int, *, key: str | None = None) -> Tensor:
    """Load ``n`` integer class labels (``.npy``/``.pt``/``.safetensors``/``.txt``).

    Text files hold one label per line; non-integer labels are mapped to ids in sorted order.

    Args:
        path: the labels file.
        n: expected number of labels (rows of the embeddings).
        key: entry of a dict-like file.

    Returns:
        int64 tensor ``(n,)``.

    Raises:
        InputError: unreadable, wrong length, not 1-D, non-integral or negative values.
    """
    p = Path(path)
    arr = _read_array(p, "labels", key)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InputError(f"labels '{p}': expected a 1-D array of class ids, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise InputError(f"labels '{p}' has {arr.shape[0]} rows but the embeddings have {n}")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise InputError(f"labels '{p}': expected integer class ids, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise InputError(f"labels '{p}': expected integer class ids, got non-integral values")
    out = torch.from_numpy(arr.astype(np.int64))
    if int(out.min()) < 0:
        raise InputError(f"labels '{p}': class ids must be >= 0, got {int(out.min())}")
    return out
