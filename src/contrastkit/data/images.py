"""Decoding image files (PIL) into one ``uint8 (N, C, S, S)`` array, cached on disk.

Used by the image-folder and the CSV/JSONL pair formats. Each image is converted to grayscale
(``channels=1``) or RGB (``channels=3``) and resized to ``size × size`` (bilinear; the aspect
ratio is not kept). The decoded array is cached as ``.npy`` under the contrastkit cache folder,
keyed by every file's path, size and modification time and by ``size``/``channels``, and read
back as a memory map: a second run does not decode again, and a data set larger than memory
still trains.

A file that cannot be read raises :class:`~contrastkit.data.dataset.DataError` naming it (and
the row of the table it came from); with ``on_bad="skip"`` it is left out and reported instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.dataset import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")


def _cache_path(paths: Sequence[Path], size: int, channels: int) -> Path:
    from contrastkit.data.text import cache_dir

    h = hashlib.sha256(json.dumps({"size": size, "channels": channels, "v": 1}).encode())
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return cache_dir() / "images" / f"{h.hexdigest()[:24]}.npy"


def _decode(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        im = opened.convert("L" if channels == 1 else "RGB").resize(
            (size, size), Image.Resampling.BILINEAR
        )
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)  # (C, S, S)


def decode_images(
    paths: Sequence[Path],
    where: Sequence[str],
    *,
    size: int,
    channels: int,
    on_bad: str = "error",
    progress: bool = True,
) -> tuple[Tensor, list[int], list[str]]:
    """Decode ``paths`` into ``uint8 (N_ok, C, size, size)``.

    Args:
        paths: the image files.
        where: for each file, where it was named (``"cats/01.png"``, ``"pairs.csv row 17"``),
            used in error messages.
        size: output height and width.
        channels: 1 (grayscale) or 3 (RGB).
        on_bad: ``"error"`` raises on the first unreadable file; ``"skip"`` leaves it out.
        progress: show a progress bar while decoding.

    Returns:
        ``(images, kept, skipped)``: the decoded images, the positions in ``paths`` that were
        kept, and ``"where: reason"`` for each skipped file.

    Raises:
        DataError: an unreadable or missing file (``on_bad="error"``), or no readable file.
    """
    try:
        import PIL  # noqa: F401
    except ImportError as err:
        raise ModuleNotFoundError(
            "reading image files needs Pillow: pip install 'contrastkit[train]'"
        ) from err
    if channels not in (1, 3):
        raise DataError(f"data.channels: expected 1 or 3, got {channels}")
    if size < 1:
        raise DataError(f"data.image_size: expected >= 1, got {size}")
    missing = [(w, p) for w, p in zip(where, paths, strict=True) if not p.is_file()]
    if missing and on_bad == "error":
        w, p = missing[0]
        raise DataError(f"{w}: image file {str(p)!r} does not exist")
    present = [i for i, p in enumerate(paths) if p.is_file()]
    cache = _cache_path([paths[i] for i in present], size, channels)
    meta = cache.with_suffix(".json")
    if cache.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        kept = [present[i] for i in info["kept"]]
        skipped = [f"{where[i]}: missing file" for i in range(len(paths)) if not paths[i].is_file()]
        skipped += info["skipped"]
        if on_bad == "error" and skipped:
            raise DataError(skipped[0])
        arr = np.load(cache, mmap_mode="c")
        return torch.from_numpy(arr), kept, skipped
    from tqdm import tqdm

    out = np.empty((len(present), channels, size, size), dtype=np.uint8)
    kept_in_present: list[int] = []  # positions in `present` of the decoded rows
    bad: list[str] = []
    for j, i in enumerate(tqdm(present, desc="decoding images", unit="img", disable=not progress)):
        try:
            out[len(kept_in_present)] = _decode(paths[i], size, channels)
        except Exception as err:  # PIL raises many kinds; each becomes one clear line
            msg = f"{where[i]}: cannot read image {str(paths[i])!r} ({type(err).__name__}: {err})"
            if on_bad == "error":
                raise DataError(msg) from err
            bad.append(msg)
            continue
        kept_in_present.append(j)
    if not kept_in_present:
        raise DataError(f"{where[0] if where else 'data'}: no readable image among {len(paths)}")
    out = out[: len(kept_in_present)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, out)
    os.replace(tmp, cache)
    meta.write_text(json.dumps({"kept": kept_in_present, "skipped": bad}))
    kept = [present[j] for j in kept_in_present]
    skipped = [f"{where[i]}: missing file" for i in range(len(paths)) if not paths[i].is_file()]
    return torch.from_numpy(out), kept, skipped + bad
