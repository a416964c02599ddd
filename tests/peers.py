"""Loaders for the peer packages the parity tests compare against.

`scripts/install_peers.sh` installs them (exact versions below). Each `load_*` function returns
the peer's loss module, or skips the calling test with the real import error. `import_peer`
raises instead of skipping: `tests/test_peers_importable.py` uses it so that a missing peer
fails CI rather than silently skipping every cross-check.

torchvision: lightly and open_clip import it at import time. The only torchvision on PyPI is
built against CUDA torch; beside the CPU torch its C extension does not load and the import
dies in `torchvision._meta_registrations` ("operator torchvision::nms does not exist"). The
install script therefore puts torchvision in `<venv>/peer-torchvision` (off sys.path, so it
cannot break `import torchvision` elsewhere), and `_ensure_torchvision` adds that directory to
sys.path and registers an empty `torchvision._meta_registrations` (it only registers Meta
kernels for torchvision's detection operators, which no loss uses) before importing it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

# distribution name -> (pinned version, module holding the loss code)
PEERS: dict[str, tuple[str, str]] = {
    "pytorch-metric-learning": ("2.9.0", "pytorch_metric_learning.losses"),
    "lightly": ("1.6.0", "lightly.loss"),
    "open-clip-torch": ("3.3.0", "open_clip.loss"),
    "info-nce-pytorch": ("0.1.4", "info_nce"),
    "libauc": ("2.0.1", "libauc.losses.contrastive"),
    "symile": ("0.1.0", "symile"),
    "diffsort": ("0.2.0", "diffsort"),
}
NEEDS_TORCHVISION = {"lightly", "open-clip-torch"}
TORCHVISION_DIR = Path(sys.prefix) / "peer-torchvision"


def _ensure_torchvision() -> None:
    if "torchvision" in sys.modules:
        return
    if importlib.util.find_spec("torchvision") is None and TORCHVISION_DIR.is_dir():
        # Appended, never prepended: it must not shadow anything installed normally.
        sys.path.append(str(TORCHVISION_DIR))
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError(
            f"torchvision is not installed (looked in sys.path and {TORCHVISION_DIR}); "
            "run `bash scripts/install_peers.sh .venv/bin/python`"
        )
    name = "torchvision._meta_registrations"
    sys.modules.setdefault(name, types.ModuleType(name))
    importlib.import_module("torchvision")


def import_peer(dist: str) -> types.ModuleType:
    """Import the loss module of peer distribution `dist`; raise on any failure."""
    _version, module = PEERS[dist]
    if dist in NEEDS_TORCHVISION:
        _ensure_torchvision()
    return importlib.import_module(module)


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load(dist: str) -> types.ModuleType:
    try:
        return import_peer(dist)
    except Exception as exc:  # any import failure is a skip with its exact reason
        import pytest

        pytest.skip(f"{dist} cannot be imported here: {type(exc).__name__}: {exc}")


def load_pml() -> types.ModuleType:
    """`pytorch_metric_learning.losses`."""
    return _load("pytorch-metric-learning")


def load_lightly_loss() -> types.ModuleType:
    """`lightly.loss`."""
    return _load("lightly")


def load_open_clip_loss() -> types.ModuleType:
    """`open_clip.loss`."""
    return _load("open-clip-torch")


def load_info_nce() -> types.ModuleType:
    """`info_nce` (info-nce-pytorch)."""
    return _load("info-nce-pytorch")


def load_libauc_contrastive() -> types.ModuleType:
    """`libauc.losses.contrastive`."""
    return _load("libauc")


def load_symile() -> types.ModuleType:
    """`symile`."""
    return _load("symile")


def load_diffsort() -> types.ModuleType:
    """`diffsort`."""
    return _load("diffsort")
