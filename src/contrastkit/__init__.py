"""contrastkit: every contrastive-learning objective in one place, exact and memory-bounded.

``import contrastkit`` is cheap (it does not import torch): the losses,
``LearnableTemperature`` and ``grad_cache_step`` are loaded on first use, and so are the
sub-packages ``contrastkit.metrics``, ``contrastkit.data``, ``contrastkit.engine``, ...
(``ck.metrics.auc`` works after ``import contrastkit as ck``).

Examples:
    >>> import torch, contrastkit as ck
    >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss = ck.clip_loss(a, b, temperature=0.07)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Sub-packages and modules reachable as attributes (imported on first access).
_SUBMODULES = frozenset(
    {"analyze", "bench", "data", "distributed", "engine", "gradcache", "losses", "metrics", "train"}
)
#: Top-level names that do not come from ``contrastkit.losses``.
_TOP_LEVEL = {
    "LearnableTemperature": "contrastkit.temperature",
    "grad_cache_step": "contrastkit.gradcache",
}

if TYPE_CHECKING:  # the static view of the lazy attributes below
    from contrastkit import analyze as analyze
    from contrastkit import data as data
    from contrastkit import distributed as distributed
    from contrastkit import engine as engine
    from contrastkit import losses as losses
    from contrastkit import metrics as metrics
    from contrastkit import train as train
    from contrastkit.gradcache import grad_cache_step as grad_cache_step
    from contrastkit.losses import *  # noqa: F403
    from contrastkit.temperature import LearnableTemperature as LearnableTemperature


def _loss_names() -> list[str]:
    return list(importlib.import_module("contrastkit.losses").__all__)


def __getattr__(name: str) -> Any:
    """Import a sub-package, a loss or a top-level helper on first access."""
    if name == "__all__":
        value: Any = [*_TOP_LEVEL, *_loss_names()]
    elif name in _SUBMODULES:
        value = importlib.import_module(f"contrastkit.{name}")
    elif name in _TOP_LEVEL:
        value = getattr(importlib.import_module(_TOP_LEVEL[name]), name)
    elif not name.startswith("__") and name in _loss_names():
        value = getattr(importlib.import_module("contrastkit.losses"), name)
    else:
        raise AttributeError(f"module 'contrastkit' has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES, *_TOP_LEVEL, *_loss_names()})
