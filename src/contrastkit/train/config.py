"""Training configuration: TOML recipes, defaults, budgets, ``--set`` overrides and validation.

A config is a nested dict. Every key must exist in :data:`DEFAULTS` and keep the default's type,
except the free tables (each term's ``params``, checked against the objective's constructor, and
``model.encoder_kwargs``). Loss terms live in ``[objectives.NAME]`` tables (see
:data:`TERM_DEFAULTS`); ``[objective]`` is short for ``[objectives.main]``. A recipe may carry
``[budgets.NAME]`` tables of dotted overrides selected by ``budget = "NAME"``.
Errors are :class:`ConfigError` (a ``ValueError``) and name the offending key.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "description": "",
    "seed": 0,
    "budget": "",
    "data": {
        "format": "fashion-mnist",
        "root": "",
        "path": "",
        "test_path": "",
        "test_fraction": 0.2,
        "image_size": 32,
        "channels": 3,
        "image_key": "image",
        "text_key": "text",
        "label_key": "label",
        "input_key": "x",
        "paired_key": "",
        "on_bad": "error",
        "validation_fraction": 0.0,
        "train_subset": 0,
        "long_tail_ratio": 1.0,
        "seen_classes": [],
        "eval_train_subset": 0,
        "eval_test_subset": 0,
    },
    "augment": {
        "enabled": True,
        "crop_scale": [0.5, 1.0],
        "flip_p": 0.5,
        "affine_p": 0.5,
        "degrees": 10.0,
        "translate": 0.1,
        "noise_p": 0.0,
        "noise_std": 0.05,
        "erase_p": 0.0,
        "erase_scale": [0.02, 0.15],
        "jitter_p": 0.8,
        "brightness": 0.4,
        "contrast": 0.4,
        "blur_p": 0.0,
        "blur_sigma": [0.1, 1.0],
        "vector_noise": 0.1,
        "vector_dropout": 0.1,
    },
    "model": {
        "encoder": "",
        "encoder_kwargs": {},
        "freeze_encoder": False,
        "width": 32,
        "pool": "fc",
        "feature_dim": 128,
        "stem": False,
        "mlp_hidden": [512],
        "proj_hidden": 128,
        "proj_dim": 64,
        "head_bn": False,
        "text_tower": "minilm-frozen",
        "text_head": "none",
    },
    "objectives": {},
    "text": {
        "template": "a photo of a {}.",
        "descriptions": [],
        "captions": False,
        "control": "none",
    },
    "optim": {
        "name": "adamw",
        "lr": 2e-3,
        "lr_batch": 0,  # > 0: lr is for this batch size, scaled linearly to train.batch_size
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "warmup_steps": 50,
        "schedule": "cosine",
    },
    "train": {
        "epochs": 10,
        "max_steps": 0,
        "batch_size": 256,
        "checkpoint_every": 200,
        "log_every": 10,
        "threads": 0,
        "progress": True,
        "device": "cpu",
        "precision": "fp32",
        "views": 2,
        "check_finite": True,
        "sync_batchnorm": True,
        "csv": True,
        "tensorboard": False,
    },
    "eval": {
        "knn_k": 200,
        "knn_temperature": 0.1,
        "probe_max_iter": 1000,
        "linear_probe": True,
        "baselines": True,
        "epoch_knn": True,
        "epoch_knn_train": 5000,
        "epoch_knn_test": 2000,
        "epoch_geometry": True,
        "zero_shot": False,
    },
    # class-incremental training (contrastkit.train.continual); tasks = 0: ordinary training
    "continual": {
        "tasks": 0,
        "classes_per_task": 2,
        "class_order": [],
        "order_seed": 0,
        "buffer_size": 200,
        "selection": "random",
        "replay_batch_size": 64,
        "teacher": True,
        "epochs_per_task": [],
        "joint": False,
        "eval_knn": True,
        "random_text": False,
    },
}

# One loss term of the [objectives] table (``[objective]`` is short for ``[objectives.main]``).
TERM_DEFAULTS: dict[str, Any] = {
    "name": "InfoNCELoss",
    "weight": 1.0,
    "params": {},
    "pairing": "views",
    "positive_ids": "none",
}
DEFAULT_TERM = "main"

_FREE_TABLES = {"objective.params", "model.encoder_kwargs"}
_CHOICES = {
    "objective.pairing": ("views", "text"),
    "objective.positive_ids": ("none", "labels"),
    "data.format": ("fashion-mnist", "image-folder", "pairs", "embeddings"),
    "data.on_bad": ("error", "skip"),
    "optim.name": ("adamw", "sgd"),
    "model.pool": ("avg", "fc"),
    "model.text_tower": ("minilm-frozen", "minilm"),
    "text.control": ("none", "shuffled", "shuffled-in-class", "class-random"),
    "model.text_head": ("none", "linear", "mlp"),
    "optim.schedule": ("cosine", "constant"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "continual.selection": ("random", "herding"),
}


class ConfigError(ValueError):
    """A configuration error; the message names the key."""


def list_recipes() -> dict[str, str]:
    """Names of the shipped recipes and their one-line descriptions."""
    out = {}
    for path in sorted(RECIPES_DIR.glob("*.toml")):
        with path.open("rb") as f:
            out[path.stem] = str(tomllib.load(f).get("description", ""))
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file or a syntax error is a :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: invalid TOML: {err}") from err


def recipe_path(name: str) -> Path:
    """Path of a shipped recipe; an unknown name is a :class:`ConfigError` listing the others."""
    path = RECIPES_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(
            f"recipe: unknown recipe {name!r}; available: {', '.join(sorted(list_recipes()))}"
        )
    return path


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as TOML (``3``, ``0.1``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", ...]`` into ``{"a.b": 1, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value.strip())
    return out


def _alias(key: str) -> str:
    """``objective[.x]`` is short for ``objectives.main[.x]``."""
    if key == "objective" or key.startswith("objective."):
        return f"objectives.{DEFAULT_TERM}" + key[len("objective") :]
    return key


def _generic(path: str) -> str:
    """The key of ``path`` in the tables of choices and free tables (terms → ``objective.*``)."""
    parts = path.split(".")
    if len(parts) >= 3 and parts[0] == "objectives":
        return ".".join(["objective", *parts[2:]])
    return path


def _set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = _alias(key).split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        prefix = ".".join(parts[: i + 1])
        if child is None and (_generic(prefix) in _FREE_TABLES or parts[:i] == ["objectives"]):
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: unknown key (no table {prefix!r})")
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str = "") -> None:
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, path + ".")
        else:
            base[key] = copy.deepcopy(value)


def _check_type(path: str, value: Any, expected: Any) -> None:
    if isinstance(expected, bool):
        ok = isinstance(value, bool)
    elif isinstance(expected, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(expected, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(expected, str):
        ok = isinstance(value, str)
    elif isinstance(expected, list):
        ok = isinstance(value, list)
    else:  # pragma: no cover
        ok = True
    if not ok:
        raise ConfigError(
            f"{path}: expected {type(expected).__name__}, got {type(value).__name__} ({value!r})"
        )
    choices = _CHOICES.get(_generic(path))
    if choices is not None and value not in choices:
        raise ConfigError(f"{path}: expected one of {choices}, got {value!r}")


def _validate(cfg: Mapping[str, Any], ref: Mapping[str, Any], prefix: str = "") -> None:
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if key not in ref:
            raise ConfigError(f"{path}: unknown key; expected one of {sorted(ref)}")
        expected = ref[key]
        if isinstance(expected, dict) or _generic(path) in _FREE_TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
            if path == "objectives":
                for name, term in value.items():
                    if not isinstance(term, Mapping):
                        raise ConfigError(
                            f"objectives.{name}: expected a table (name, weight, params, ...), "
                            f"got {type(term).__name__}"
                        )
                    _validate(term, TERM_DEFAULTS, f"objectives.{name}.")
            elif _generic(path) not in _FREE_TABLES:
                _validate(value, expected, path + ".")
            continue
        _check_type(path, value, expected)


def _coerce_floats(cfg: dict[str, Any], ref: Mapping[str, Any]) -> None:
    for key, value in cfg.items():
        expected = ref.get(key)
        if key == "objectives" and isinstance(value, dict):
            for term in value.values():
                _coerce_floats(term, TERM_DEFAULTS)
        elif isinstance(expected, dict) and isinstance(value, dict):
            _coerce_floats(value, expected)
        elif isinstance(expected, float) and isinstance(value, int):
            cfg[key] = float(value)


def _unalias_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    if "objective" in recipe:
        terms = recipe.setdefault("objectives", {})
        if not isinstance(terms, dict) or DEFAULT_TERM in terms:
            raise ConfigError(
                f"objective: give [objective] or [objectives.{DEFAULT_TERM}], not both"
            )
        terms[DEFAULT_TERM] = recipe.pop("objective")
    return recipe


def resolve(
    recipe: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults ← recipe ← the selected budget's overrides ← ``overrides``; validated.

    ``[objective]`` is short for ``[objectives.main]`` (also in ``--set objective.name=...``).
    When ``overrides`` change a term's ``name`` but not its ``params``, the params the new
    objective does not accept are dropped with a warning (the recipe's ``symmetric = true`` does
    not break ``--set objective.name=DCLLoss``). A config without any term trains
    ``InfoNCELoss``.

    Raises:
        ConfigError: an unknown key, a wrong type or an unknown budget, naming the key.
    """
    recipe = _unalias_recipe(copy.deepcopy(dict(recipe or {})))
    overrides = {_alias(k): v for k, v in dict(overrides or {}).items()}
    budgets = recipe.pop("budgets", {})
    if not isinstance(budgets, Mapping):
        raise ConfigError("budgets: expected a table of budget tables")
    cfg = copy.deepcopy(DEFAULTS)
    _validate(recipe, DEFAULTS)
    _merge(cfg, recipe)
    budget = overrides.pop("budget", cfg.get("budget", ""))
    if not isinstance(budget, str):
        raise ConfigError(f"budget: expected str, got {type(budget).__name__}")
    if budget and (budgets or budget != cfg.get("budget")):
        # (a resolved config keeps its budget name but no budgets table: nothing to re-apply)
        if budget not in budgets:
            raise ConfigError(
                f"budget: unknown budget {budget!r}; this recipe has {sorted(budgets) or 'none'}"
            )
        for key, value in _flatten(budgets[budget]).items():
            _set_dotted(cfg, key, value)
    cfg["budget"] = budget
    before = {name: dict(term) for name, term in cfg["objectives"].items()}
    for key, value in overrides.items():
        _set_dotted(cfg, key, value)
    if not cfg["objectives"]:
        cfg["objectives"][DEFAULT_TERM] = {}
    for name, term in cfg["objectives"].items():
        if not isinstance(term, dict):
            raise ConfigError(f"objectives.{name}: expected a table, got {type(term).__name__}")
        for key, value in TERM_DEFAULTS.items():
            term.setdefault(key, copy.deepcopy(value))
    _validate(cfg, DEFAULTS)
    _coerce_floats(cfg, DEFAULTS)
    for name, term in cfg["objectives"].items():
        renamed = name in before and before[name].get("name", term["name"]) != term["name"]
        params_set = any(k.startswith(f"objectives.{name}.params") for k in overrides)
        if renamed and not params_set:
            _drop_unaccepted_params(name, term)
    return cfg


def _drop_unaccepted_params(term_name: str, term: dict[str, Any]) -> None:
    from contrastkit.train.terms import accepted_params

    accepted = accepted_params(term["name"], f"objectives.{term_name}.name")
    if accepted is None:  # takes **kwargs
        return
    dropped = sorted(k for k in term["params"] if k not in accepted)
    if dropped:
        warnings.warn(
            f"objectives.{term_name}: {term['name']} takes no {dropped}; dropped these "
            "recipe params (set objective.params explicitly to keep control)",
            stacklevel=3,
        )
        term["params"] = {k: v for k, v in term["params"].items() if k in accepted}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = _alias(f"{prefix}{key}")
        if isinstance(value, Mapping) and _generic(path) not in _FREE_TABLES:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def dumps(cfg: Mapping[str, Any]) -> str:
    """Serialise a resolved config as TOML (tables after scalars, as TOML requires)."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], name: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        if name:
            lines.append(f"\n[{name}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in tables.items():
            emit(v, f"{name}.{k}" if name else k)

    emit(cfg, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")
