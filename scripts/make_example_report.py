"""Build docs/example_report/ from real data: raw Fashion-MNIST pixels via `contrastkit analyze`.

Reads the IDX files directly (numpy + gzip), takes the first 5000 test images as 784-d pixel
vectors scaled to [0, 1] with their class labels, and runs the `contrastkit analyze` command on
them. Writes docs/example_report/{report.html, metrics.json, overview.png}.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/make_example_report.py
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> int:
    """Load the data, run `contrastkit analyze`, return its exit status."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "example_report")
    args = p.parse_args()
    images = read_idx(args.data / "t10k-images-idx3-ubyte.gz")[: args.n]
    labels = read_idx(args.data / "t10k-labels-idx1-ubyte.gz")[: args.n]
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    args.out.mkdir(parents=True, exist_ok=True)
    from contrastkit.analyze.cli import main as analyze_main

    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # so that metrics.json records short file names
        np.save("fashion_mnist_t10k_pixels.npy", x)
        np.save("fashion_mnist_t10k_labels.npy", labels.astype(np.int64))
        rc = analyze_main(
            [
                "fashion_mnist_t10k_pixels.npy",
                "--labels",
                "fashion_mnist_t10k_labels.npy",
                "--out",
                str(args.out),
                "--title",
                f"Fashion-MNIST raw pixels ({args.n} test images, 784-d)",
                "--overview",
                str(args.out / "overview.png"),
            ]
        )
        os.chdir(ROOT)
    return rc


if __name__ == "__main__":
    sys.exit(main())
