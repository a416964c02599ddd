"""Loss terms: select objectives by name, weight them, and route a batch to each by signature.

A config lists its terms in ``[objectives.NAME]`` tables (``[objective]`` is short for
``[objectives.main]``)::

    [objectives.contrast]
    name = "SupConLoss"          # a Loss class exported from contrastkit, or "pkg.module:Class"
    weight = 1.0
    params = { temperature = 0.1 }
    pairing = "views"            # what its (a, b) are: two augmented views, or image and text

    [objectives.ce]
    name = "CrossEntropy"        # a linear classifier on the encoder's features
    weight = 0.5

Each term's ``forward`` argument names decide what it receives (see docs/conventions.md):

=================== =============================================================================
argument            what the trainer passes
=================== =============================================================================
``a, b``            ``pairing="views"``: projections of views 1 and 2; ``"text"``: the image
                    projection and the row's text (second-modality) embedding
``embeddings``      the same, stacked ``(B, V, d)``; ``views`` likewise
``labels``          class ids ``(B,)``
``index``           dataset positions ``(B,)`` (per-sample state: SogCLR, iSogCLR)
``weight_embeddings`` the frozen text embeddings (``pairing="text"``; CWCL's weights)
``positive_ids``    the labels, when ``positive_ids = "labels"`` (same-class rows are no negatives)
``logits``          the classifier's logits (a classifier head is built when a term asks)
``student``         the projections of the first view (continual learning, ``[continual]``)
``teacher``         the frozen previous-task model's projections of the same rows
``rehearsal_mask``  ``(B,)`` bool, True for the rows replayed from the rehearsal buffer
=================== =============================================================================

The last three exist only in class-incremental training (``continual.tasks > 0``, see
:mod:`contrastkit.train.continual`); a term that needs a teacher is inactive on the first task.

Under ``torchrun`` (several ranks), a term whose class takes ``gather_distributed`` gets it set
to True, so it contrasts against the global batch with correct gradients.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
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
    "logits",
    "student",
    "teacher",
    "rehearsal_mask",
)
# Constructor arguments the trainer fills in from the data when the config leaves them out.
DATASET_SIZE_ARGS = ("num_samples", "dataset_size", "data_size")
_PAIR_INPUTS = {"a", "b", "embeddings", "views"}
#: Inputs only class-incremental training provides (see contrastkit.train.continual).
CONTINUAL_INPUTS = {"student", "teacher", "rehearsal_mask"}


class CrossEntropy(nn.Module):
    """Supervised cross-entropy of a linear classifier on the encoder's features.

    The config name ``"CrossEntropy"``: the trainer builds the classifier (``features →
    num_classes``) and passes its logits.

    Args:
        label_smoothing: as :func:`torch.nn.functional.cross_entropy`.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of ``logits (B, K)`` against ``labels (B,)``."""
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)


BUILTIN = {"CrossEntropy": CrossEntropy}


def available_objectives() -> list[str]:
    """Names of the ``nn.Module`` objectives exported from ``contrastkit``, plus the built-ins."""
    import contrastkit

    names = getattr(contrastkit, "__all__", dir(contrastkit))
    out = list(BUILTIN)
    for name in names:
        obj = getattr(contrastkit, name, None)
        if inspect.isclass(obj) and issubclass(obj, nn.Module) and name.endswith("Loss"):
            out.append(name)
    return sorted(out)


def objective_class(name: str, key: str = "objective.name") -> type[nn.Module]:
    """Look up ``name`` (see module docstring); unknown ⇒ :class:`ConfigError` naming ``key``."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"{key}: cannot import {name!r}: {err}") from err
    else:
        import contrastkit

        obj = getattr(contrastkit, name, None)
        if obj is None:
            known = ", ".join(available_objectives())
            raise ConfigError(f"{key}: unknown objective {name!r}; available: {known}")
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ConfigError(f"{key}: {name!r} is not an nn.Module class")
    return obj


def accepted_params(name: str, key: str = "objective.name") -> set[str] | None:
    """Constructor parameters of objective ``name``; None when it takes ``**kwargs``."""
    sig = inspect.signature(objective_class(name, key).__init__)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {p for p in sig.parameters if p != "self"}


def forward_inputs(module: nn.Module) -> tuple[set[str], set[str]]:
    """``(all, required)`` argument names of ``module.forward``."""
    params = list(inspect.signature(module.forward).parameters.values())
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {p.name for p in named}, {p.name for p in named if p.default is p.empty}


@dataclass
class Streams:
    """What one batch offers the terms (this rank's rows).

    Attributes:
        views: projections of the ``V`` views, each ``(b, d)``.
        text: the rows' projected text (second-modality) embeddings ``(b, d)``, or None.
        text_raw: the frozen text embeddings before any text head ``(b, D2)``, or None.
        labels: ``(b,)`` or None; index: ``(b,)``; logits: ``(b, K)`` or None.
        teacher: the frozen previous-task model's projections ``(b, d)`` (continual), or None.
        rehearsal_mask: ``(b,)`` bool, True for replayed rows (continual), or None.
    """

    views: list[Tensor]
    text: Tensor | None
    text_raw: Tensor | None
    labels: Tensor | None
    index: Tensor
    logits: Tensor | None = None
    teacher: Tensor | None = None
    rehearsal_mask: Tensor | None = None


@dataclass
class Term:
    """One weighted loss term and how to feed it.

    Attributes:
        name: its key in ``[objectives]``; objective: the configured class name.
        module: the loss module (its parameters and buffers are part of the checkpoint).
        weight: its weight in the total loss.
        pairing: ``"views"`` or ``"text"``.
        inputs: the ``forward`` argument names the trainer supplies.
        labels_as_positive_ids: pass the labels as ``positive_ids``.
    """

    name: str
    objective: str
    module: nn.Module
    weight: float
    pairing: str
    inputs: set[str]
    labels_as_positive_ids: bool = False

    def __call__(self, s: Streams) -> Tensor:
        """The term's (unweighted) loss on the batch ``s``."""
        if self.pairing == "text":
            assert s.text is not None  # checked when the terms were built
            pair = [s.views[0], s.text]
        else:
            pair = s.views
        kwargs: dict[str, Any] = {}
        if "a" in self.inputs:
            kwargs["a"], kwargs["b"] = pair[0], pair[1]
        if "embeddings" in self.inputs:
            kwargs["embeddings"] = torch.stack(pair, dim=1)  # (b, V, d)
        if "views" in self.inputs:
            kwargs["views"] = torch.stack(pair, dim=1)  # (b, V, d)
        if "labels" in self.inputs:
            kwargs["labels"] = s.labels
        if "index" in self.inputs:
            kwargs["index"] = s.index
        if "positive_ids" in self.inputs and self.labels_as_positive_ids:
            kwargs["positive_ids"] = s.labels
        if "weight_embeddings" in self.inputs and self.pairing == "text":
            kwargs["weight_embeddings"] = s.text_raw
        if "logits" in self.inputs:
            kwargs["logits"] = s.logits
        if "student" in self.inputs:
            kwargs["student"] = s.views[0]
        if "teacher" in self.inputs:
            kwargs["teacher"] = s.teacher
        if "rehearsal_mask" in self.inputs:
            kwargs["rehearsal_mask"] = s.rehearsal_mask
        loss: Tensor = self.module(**kwargs)
        return loss


def build_term(
    name: str,
    spec: Mapping[str, Any],
    *,
    dataset_size: int,
    has_labels: bool,
    has_text: bool,
    world_size: int = 1,
    continual: bool = False,
) -> Term:
    """Instantiate one ``[objectives.NAME]`` table and check its ``forward`` can be fed.

    Raises:
        ConfigError: unknown objective or parameter, a rejected value, or an input the data or
            the trainer cannot provide — each naming the key.
    """
    key = f"objectives.{name}"
    cls = objective_class(spec["name"], f"{key}.name")
    params = dict(spec["params"])
    sig = inspect.signature(cls.__init__)
    accepted = accepted_params(spec["name"], f"{key}.name")
    for p in params:
        if accepted is not None and p not in accepted:
            raise ConfigError(
                f"{key}.params.{p}: {spec['name']} has no parameter {p!r}; "
                f"it takes {sorted(accepted)}"
            )
    for p in DATASET_SIZE_ARGS:
        if p in sig.parameters and p not in params:
            params[p] = dataset_size
    gathers = "gather_distributed" in sig.parameters
    if world_size > 1 and gathers and "gather_distributed" not in params:
        params["gather_distributed"] = True
    try:
        module = cls(**params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}.params: {spec['name']}({params}) rejected them: {err}") from err
    names, required = forward_inputs(module)
    unsupported = sorted(required - set(SUPPORTED_INPUTS))
    if unsupported:
        raise ConfigError(
            f"{key}.name: {spec['name']}.forward needs {unsupported}, which the trainer cannot "
            f"provide (it provides {list(SUPPORTED_INPUTS)})"
        )
    if not (names & (_PAIR_INPUTS | {"logits", "student"})):
        raise ConfigError(
            f"{key}.name: {spec['name']}.forward takes none of (a, b), embeddings, views, logits, "
            f"student: {sorted(names)}"
        )
    if required & CONTINUAL_INPUTS and not continual:
        raise ConfigError(
            f"{key}.name: {spec['name']} needs {sorted(required & CONTINUAL_INPUTS)} (a teacher "
            "model and a rehearsal buffer): set continual.tasks > 0 (class-incremental training)"
        )
    if "weight_embeddings" in required and spec["pairing"] != "text":
        raise ConfigError(
            f'{key}.pairing: {spec["name"]} needs weight_embeddings (text); set pairing = "text"'
        )
    if spec["pairing"] == "text" and not has_text:
        raise ConfigError(
            f'{key}.pairing: "text" needs a text (second modality) per row: text.descriptions / '
            "a class template (fashion-mnist, class folders), a text column (pairs) or "
            "data.paired_key (embeddings)"
        )
    wants_labels = bool(required & {"labels", "logits"}) or spec["positive_ids"] == "labels"
    if wants_labels and not has_labels:
        raise ConfigError(
            f"{key}.name: {spec['name']} needs class labels, and the data has none (data.label_key)"
        )
    if spec["positive_ids"] == "labels" and "positive_ids" not in names:
        raise ConfigError(f"{key}.positive_ids: {spec['name']}.forward takes no positive_ids")
    if world_size > 1 and "index" in names:
        raise ConfigError(
            f"{key}.name: {spec['name']} keeps per-sample state addressed by index, which is not "
            f"synchronised across ranks; run it in one process (world size is {world_size})"
        )
    if world_size > 1 and not gathers and names & _PAIR_INPUTS:
        warnings.warn(
            f"{key}: {spec['name']} has no gather_distributed option: each rank contrasts only "
            "its own rows (fewer negatives than a single process on the global batch)",
            stacklevel=2,
        )
    return Term(
        name,
        spec["name"],
        module,
        float(spec["weight"]),
        spec["pairing"],
        names & set(SUPPORTED_INPUTS),
        spec["positive_ids"] == "labels",
    )


def build_terms(
    cfg: Mapping[str, Any],
    *,
    dataset_size: int,
    has_labels: bool,
    has_text: bool,
    world_size: int = 1,
    continual: bool = False,
) -> dict[str, Term]:
    """Every term of ``cfg["objectives"]`` (see :func:`build_term`)."""
    return {
        name: build_term(
            name,
            spec,
            dataset_size=dataset_size,
            has_labels=has_labels,
            has_text=has_text,
            world_size=world_size,
            continual=continual,
        )
        for name, spec in cfg["objectives"].items()
    }


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
