"""Training configuration: TOML recipes, defaults, budgets, ``--set`` overrides and validation.

A config is a nested dict. Every key must exist in :data:`DEFAULTS` (except under
``objective.params``, checked against the objective's constructor) and keep the default's type;
a recipe may carry ``[budgets.NAME]`` tables of dotted overrides selected by ``budget = "NAME"``.
Errors are :class:`ConfigError` (a ``ValueError``) and name the offending key.
"""

from __future__ import annotations

import copy
import sys
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
        "root": "",
        "train_subset": 0,
        "long_tail_ratio": 1.0,
        "seen_classes": [],
        "eval_train_subset": 0,
        "eval_test_subset": 0,
    },
    "augment": {
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
    },
    "model": {
        "width": 32,
        "pool": "fc",
        "feature_dim": 128,
        "stem": False,
        "proj_hidden": 128,
        "proj_dim": 64,
        "head_bn": False,
    },
    "objective": {"name": "InfoNCELoss", "params": {}, "pairing": "views", "positive_ids": "none"},
    "text": {"template": "a photo of a {}.", "descriptions": []},
    "optim": {
        "name": "adamw",
        "lr": 2e-3,
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
        "zero_shot": False,
    },
}

_FREE_TABLES = {"objective.params"}
_CHOICES = {
    "objective.pairing": ("views", "text"),
    "objective.positive_ids": ("none", "labels"),
    "optim.name": ("adamw", "sgd"),
    "model.pool": ("avg", "fc"),
    "optim.schedule": ("cosine", "constant"),
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


def _set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and ".".join(parts[: i + 1]) in _FREE_TABLES:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: unknown key (no table {'.'.join(parts[: i + 1])!r})")
        node = child
    node[parts[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str = "") -> None:
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, path + ".")
        else:
            base[key] = copy.deepcopy(value)


def _validate(cfg: Mapping[str, Any], ref: Mapping[str, Any], prefix: str = "") -> None:
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if key not in ref:
            raise ConfigError(f"{path}: unknown key; expected one of {sorted(ref)}")
        expected = ref[key]
        if path in _FREE_TABLES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
            continue
        if isinstance(expected, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
            _validate(value, expected, path + ".")
            continue
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
                f"{path}: expected {type(expected).__name__}, got {type(value).__name__} "
                f"({value!r})"
            )
        if path in _CHOICES and value not in _CHOICES[path]:
            raise ConfigError(f"{path}: expected one of {_CHOICES[path]}, got {value!r}")


def _coerce_floats(cfg: dict[str, Any], ref: Mapping[str, Any]) -> None:
    for key, value in cfg.items():
        expected = ref.get(key)
        if isinstance(expected, dict) and isinstance(value, dict):
            _coerce_floats(value, expected)
        elif isinstance(expected, float) and isinstance(value, int):
            cfg[key] = float(value)


def resolve(
    recipe: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults ← recipe ← the selected budget's overrides ← ``overrides``; validated.

    Raises:
        ConfigError: an unknown key, a wrong type or an unknown budget, naming the key.
    """
    recipe = dict(recipe or {})
    overrides = dict(overrides or {})
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
    for key, value in overrides.items():
        _set_dotted(cfg, key, value)
    _validate(cfg, DEFAULTS)
    _coerce_floats(cfg, DEFAULTS)
    return cfg


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping) and f"{prefix}{key}" not in _FREE_TABLES:
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
