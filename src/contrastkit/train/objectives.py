"""Select an objective by name and route a training batch to its ``forward`` by signature.

``objective.name`` is a class exported from ``contrastkit`` (``"InfoNCELoss"``, ``"DCLLoss"``,
...) or a ``"package.module:Class"`` path for a user's own objective. Its ``forward`` argument
names decide what it receives (see docs/conventions.md): ``a, b`` two views (or image and text),
``embeddings, labels`` the views stacked ``(B, V, d)`` with the labels, ``views`` the stacked
views, ``index`` the dataset indices, ``weight_embeddings`` the frozen text embeddings.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.train.config import ConfigError

SUPPORTED_INPUTS = (
    "a",
    "b",
    "embeddings",
    "labels",
    "views",
    "index",
    "weight_embeddings",
    "positive_ids",
)
# Constructor arguments the trainer fills in from the data when the config leaves them out.
DATASET_SIZE_ARGS = ("num_samples", "dataset_size", "data_size")


def available_objectives() -> list[str]:
    """Names of the ``nn.Module`` objectives exported from ``contrastkit``."""
    import contrastkit

    names = getattr(contrastkit, "__all__", dir(contrastkit))
    out = []
    for name in names:
        obj = getattr(contrastkit, name, None)
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and name.endswith("Loss"):
            out.append(name)
    return sorted(out)


def objective_class(name: str) -> type[nn.Module]:
    """Look up ``name`` (see module docstring); unknown ⇒ :class:`ConfigError` naming the key."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"objective.name: cannot import {name!r}: {err}") from err
    else:
        import contrastkit

        obj = getattr(contrastkit, name, None)
        if obj is None:
            known = ", ".join(available_objectives()) or "(none exported yet)"
            raise ConfigError(f"objective.name: unknown objective {name!r}; available: {known}")
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ConfigError(f"objective.name: {name!r} is not an nn.Module class")
    return obj


def forward_inputs(module: nn.Module) -> tuple[set[str], set[str]]:
    """``(all, required)`` argument names of ``module.forward``."""
    params = list(inspect.signature(module.forward).parameters.values())
    names = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    required = {
        p.name
        for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    return names, required


@dataclass
class Objective:
    """An objective module plus how to feed it.

    Attributes:
        module: the loss module (its parameters and buffers are part of the checkpoint).
        name: its configured name.
        inputs: the ``forward`` argument names the trainer supplies.
        labels_as_positive_ids: pass the class labels as ``positive_ids`` (same-class rows are
            then not negatives), when ``objective.positive_ids = "labels"``.
    """

    module: nn.Module
    name: str
    inputs: set[str]
    labels_as_positive_ids: bool = False

    def __call__(
        self,
        views: list[Tensor],
        labels: Tensor,
        index: Tensor,
        weight_embeddings: Tensor | None = None,
    ) -> Tensor:
        """Compute the loss from the projected views ``[(B, d), ...]`` of one batch."""
        kwargs: dict[str, Any] = {}
        if "a" in self.inputs:
            kwargs["a"], kwargs["b"] = views[0], views[1]
        elif "embeddings" in self.inputs:
            kwargs["embeddings"] = torch.stack(views, dim=1)  # (B, V, d)
        elif "views" in self.inputs:
            kwargs["views"] = torch.stack(views, dim=1)  # (B, V, d)
        if "labels" in self.inputs:
            kwargs["labels"] = labels
        if "index" in self.inputs:
            kwargs["index"] = index
        if "positive_ids" in self.inputs and self.labels_as_positive_ids:
            kwargs["positive_ids"] = labels
        if "weight_embeddings" in self.inputs and weight_embeddings is not None:
            kwargs["weight_embeddings"] = weight_embeddings
        loss: Tensor = self.module(**kwargs)
        return loss


def build_objective(cfg: Mapping[str, Any], dataset_size: int) -> Objective:
    """Instantiate ``cfg["objective"]`` and check its ``forward`` can be fed.

    Raises:
        ConfigError: unknown objective, unknown parameter, rejected parameter value, or a
            ``forward`` that needs an input the trainer cannot provide.
    """
    name = cfg["objective"]["name"]
    cls = objective_class(name)
    params = dict(cfg["objective"]["params"])
    sig = inspect.signature(cls.__init__)
    accepts_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for key in params:
        if key not in sig.parameters and not accepts_kwargs:
            allowed = [p for p in sig.parameters if p != "self"]
            raise ConfigError(
                f"objective.params.{key}: {name} has no parameter {key!r}; it takes {allowed}"
            )
    for key in DATASET_SIZE_ARGS:
        if key in sig.parameters and key not in params:
            params[key] = dataset_size
    try:
        module = cls(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"objective.params: {name}({params}) rejected its parameters: {err}"
        ) from err
    names, required = forward_inputs(module)
    unsupported = sorted(required - set(SUPPORTED_INPUTS))
    if unsupported:
        raise ConfigError(
            f"objective.name: {name}.forward needs {unsupported}, which the trainer cannot "
            f"provide (it provides {list(SUPPORTED_INPUTS)})"
        )
    if not ({"a", "b"} <= names or "embeddings" in names or "views" in names):
        raise ConfigError(
            f"objective.name: {name}.forward takes none of (a, b), embeddings, views: "
            f"{sorted(names)}"
        )
    if "weight_embeddings" in required and cfg["objective"]["pairing"] != "text":
        raise ConfigError(
            f'objective.pairing: {name} needs weight_embeddings (text); set pairing = "text"'
        )
    wants_ids = cfg["objective"]["positive_ids"] == "labels"
    if wants_ids and "positive_ids" not in names:
        raise ConfigError(f"objective.positive_ids: {name}.forward takes no positive_ids")
    return Objective(module, name, names & set(SUPPORTED_INPUTS), wants_ids)


def current_temperature(module: nn.Module) -> float | None:
    """The objective's temperature right now (mean for per-sample temperatures), if it has one."""
    t = None
    for attr in ("temperature", "temperatures", "tau"):
        t = getattr(module, attr, None)
        if t is not None:
            break
    with torch.no_grad():
        if isinstance(t, nn.Module):
            t = t()
        if isinstance(t, Tensor):
            return float(t.detach().float().mean()) if t.numel() else None
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return float(t)
    return None
