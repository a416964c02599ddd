"""Import the peer packages that benchmarks and parity tests compare against.

``scripts/install_peers.sh`` installs them with ``--no-deps`` at pinned versions. lightly and
open_clip import torchvision at import time; the only torchvision on PyPI is CUDA-linked and its
C extension fails beside the CPU torch in ``torchvision._meta_registrations`` ("operator
torchvision::nms does not exist"). The install script keeps that torchvision in
``<venv>/peer-torchvision`` (off ``sys.path``); :func:`import_peer` appends it and registers an
empty ``torchvision._meta_registrations`` first — no loss code calls a torchvision operator.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

#: distribution name -> (pinned version, module holding the loss code)
PEERS: dict[str, tuple[str, str]] = {
    "pytorch-metric-learning": ("2.9.0", "pytorch_metric_learning.losses"),
    "lightly": ("1.6.0", "lightly.loss"),
    "open-clip-torch": ("3.3.0", "open_clip.loss"),
    "info-nce-pytorch": ("0.1.4", "info_nce"),
    "libauc": ("2.0.1", "libauc.losses.contrastive"),
    "symile": ("0.1.0", "symile"),
    "diffsort": ("0.2.0", "diffsort"),
}
NEEDS_TORCHVISION = frozenset({"lightly", "open-clip-torch"})
TORCHVISION_DIR = Path(sys.prefix) / "peer-torchvision"


def _ensure_torchvision() -> None:
    if "torchvision" in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is None and TORCHVISION_DIR.is_dir():
        sys.path.append(str(TORCHVISION_DIR))  # appended: never shadows a normal install
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError(
            f"torchvision is not installed (looked in sys.path and {TORCHVISION_DIR}); "
            "run `bash scripts/install_peers.sh .venv/bin/python`"
        )
    name = "torchvision._meta_registrations"
    sys.modules.setdefault(name, types.ModuleType(name))
    importlib.import_module("torchvision")


def import_peer(dist: str) -> types.ModuleType:
    """Import the loss module of peer distribution ``dist``; raise on any failure."""
    _version, module = PEERS[dist]
    if dist in NEEDS_TORCHVISION:
        _ensure_torchvision()
    return importlib.import_module(module)


def installed_version(dist: str) -> str | None:
    """Installed version of ``dist``, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
