"""Checkpoints that are never lost: atomic, checksummed, with the previous one kept.

Writing ``last.pt``:

1. the state is serialised to a temporary file in the same folder, flushed and fsynced, and its
   SHA-256 computed;
2. the current ``last.pt`` (and its ``.sha256``) become ``prev.pt``;
3. the temporary file becomes ``last.pt`` (``os.replace``: atomic), then its checksum file.

A process killed at any moment leaves at least one complete checkpoint whose checksum matches:
if ``last.pt`` is torn or its checksum is missing or wrong, :func:`load_latest` falls back to
``prev.pt`` and says so. A state whose tensors are not all finite is refused before anything is
written, so a run that diverges never replaces its last good state.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file."""


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, python) as plain, loadable values."""
    np_state: tuple[Any, ...] = tuple(np.random.get_state(legacy=True))
    name, keys, pos, has_gauss, cached = np_state
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tensors(obj: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def first_non_finite(state: Any) -> str | None:
    """The name of the first floating-point tensor in ``state`` holding NaN or inf, or None."""
    for name, t in _tensors(state):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def _sha_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _replace(src: Path, dst: Path) -> None:
    if src.exists():
        os.replace(src, dst)


def save_atomic(obj: Any, path: str | os.PathLike[str], *, keep_previous: bool = False) -> str:
    """Write ``obj`` to ``path`` atomically with a checksum file; return the SHA-256.

    Args:
        obj: tensors and plain Python values (``torch.save``-able, ``weights_only`` loadable).
        path: the target file (its folder is created).
        keep_previous: move the current ``path`` to ``prev.pt`` (same folder) first.

    Raises:
        CheckpointError: a tensor holds NaN/inf (nothing is written), or the folder cannot be
            written (read-only, full disk); the message names it.
    """
    target = Path(path)
    bad = first_non_finite(obj)
    if bad is not None:
        raise CheckpointError(
            f"not writing {target}: {bad} is not finite; the previous checkpoint is kept"
        )
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp_sha = target.with_name(f".{target.name}.sha256.tmp{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp_sha.write_text(f"{digest}  {target.name}\n")
        if keep_previous and target.exists():
            prev = target.with_name("prev.pt")
            _replace(target, prev)
            _replace(_sha_path(target), _sha_path(prev))
        os.replace(tmp, target)
        os.replace(tmp_sha, _sha_path(target))
    except OSError as err:
        for t in (tmp, tmp_sha):
            t.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {target}: {err.strerror or err}") from err
    return digest


def verify(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of ``path`` if it matches its ``.sha256`` file.

    Raises:
        CheckpointError: missing file, missing checksum file, or a mismatch (torn/corrupt file).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    sha = _sha_path(p)
    if not sha.is_file():
        raise CheckpointError(f"{p}: its checksum file {sha.name} is missing")
    expected = sha.read_text().split()[0] if sha.read_text().strip() else ""
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if digest != expected:
        raise CheckpointError(f"{p}: checksum mismatch (the file is truncated or corrupt)")
    return digest


def load(path: str | os.PathLike[str], *, check: bool = True) -> dict[str, Any]:
    """Load a checkpoint (tensors and plain Python values only), verifying its checksum.

    ``check=False`` skips the checksum (for files written by other tools).

    Raises:
        CheckpointError: a failed check or a file ``torch.load`` cannot read, naming it.
    """
    p = Path(path)
    if check and _sha_path(p).exists():
        verify(p)
    try:
        state: dict[str, Any] = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"{p}: no such checkpoint") from err
    except Exception as err:  # torn zip, foreign file, pickle refused by weights_only
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(err).__name__})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: not a contrastkit checkpoint (a {type(state).__name__})")
    return state


def load_latest(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """The newest verified checkpoint of ``folder``: ``last.pt``, else ``prev.pt``.

    A rejected ``last.pt`` is reported with a warning naming the reason.

    Raises:
        CheckpointError: neither file is a complete, verified checkpoint.
    """
    d = Path(folder)
    errors = []
    for name in ("last.pt", "prev.pt"):
        path = d / name
        if not path.exists():
            continue
        try:
            verify(path)
            state = load(path, check=False)
        except CheckpointError as err:
            errors.append(str(err))
            continue
        if errors:
            warnings.warn(f"{errors[0]}; resuming from {path.name} instead", stacklevel=2)
        return state, path
    if errors:
        raise CheckpointError("; ".join(errors))
    raise CheckpointError(f"{d}: no checkpoint to resume from (checkpoints/last.pt is missing)")


def clean_temporary(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove stray temporary files a killed writer left in ``folder``; return them."""
    d = Path(folder)
    stray = [p for p in d.glob(".*.tmp*") if p.is_file()] if d.is_dir() else []
    for p in stray:
        p.unlink(missing_ok=True)
    return stray
