"""Loaders for the peer packages the parity tests compare against.

`scripts/install_peers.sh` installs them (exact versions below). Each `load_*` function returns
the peer's loss module, or skips the calling test with the real import error. `import_peer`
raises instead of skipping: `tests/test_peers_importable.py` uses it so that a missing peer
fails CI rather than silently skipping every cross-check.

torchvision: lightly and open_clip import it at import time. The only torchvision on PyPI is
built against CUDA torch; beside the CPU torch its C extension does not load and the import
dies in `torchvision._meta_registrations` ("operator torchvision::nms does not exist"). The
install script therefore puts torchvision in `<venv>/peer-torchvision` (off sys.path, so it
cannot break `import torchvision` elsewhere), and `contrastkit.bench.peers` adds that directory
to sys.path and registers an empty `torchvision._meta_registrations` (it only registers Meta
kernels for torchvision's detection operators, which no loss uses) before importing it.
"""

from __future__ import annotations

import types

from contrastkit.bench.peers import PEERS, import_peer, installed_version

__all__ = ["PEERS", "import_peer", "installed_version"]


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
