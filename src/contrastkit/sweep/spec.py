"""A sweep file: a recipe, a grid of config keys × seeds and/or named variants, and its report.

A sweep is a TOML file (the shipped ones are in ``contrastkit/sweeps/``)::

    name = "temperature"                  # -> study_temperature.{md,json,png}
    description = "InfoNCE across τ ..."
    recipe = "simclr-fmnist"              # or config = "my_config.toml" (next to the sweep file)
    seeds = [0, 1, 2]
    metrics = ["knn_acc", "linear_probe_acc", "uniformity", "tolerance"]

    [set]                                 # overrides of every run (as `--set`)
    "data.train_subset" = 10000

    [grid]                                # the cartesian product of these values
    "objective.params.temperature" = [0.1, 0.2, 0.5]

    [variants.dcl]                        # named sets of overrides, crossed with the grid
    "objective.name" = "DCLLoss"
    "objective.params" = { temperature = 0.1 }

    [select]                              # optional validation stage (see below)
    metric = "linear_probe_acc"
    keys = ["objective.params.temperature"]
    seeds = [0]

    [[plots]]                             # panels of study_NAME.png
    kind = "line"                         # "line": y against a grid key; "scatter": two metrics
    x = "objective.params.temperature"
    y = "linear_probe_acc"

    [budgets.tiny]                        # what `--budget tiny` changes in the sweep itself
    seeds = [0, 1]
    grid = { "objective.params.temperature" = [0.1, 0.5] }

The overrides of a run are applied in this order: the sweep's ``set``, the variant's, the grid
point's, ``seed``, then the stage's (``select.set`` in the validation stage).

With ``[select]`` a sweep has two stages. The *validation* stage runs every grid point with
``select.seeds`` on a validation split held out of the training data (``select.set``, default
``data.validation_fraction = 0.1``); for each variant and each value of the grid keys that are
not chosen, the values of ``select.keys`` with the best mean ``select.metric`` are chosen; the
*final* stage runs the chosen settings with ``seeds`` on the test split. Without ``[select]``
there is only the final stage: every grid point with every seed.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError

SWEEPS_DIR = Path(__file__).resolve().parent.parent / "sweeps"

VALIDATION, FINAL = "validation", "final"
PLOT_KINDS = ("line", "scatter")
_TOP_KEYS = {
    "name",
    "description",
    "recipe",
    "config",
    "budget",
    "seeds",
    "metrics",
    "set",
    "grid",
    "variants",
    "select",
    "plots",
    "budgets",
}
_SELECT_KEYS = {"metric", "keys", "seeds", "mode", "set"}
_PLOT_KEYS = {"kind", "x", "y", "label", "stage", "logx", "title"}
_DEFAULT_VALIDATION = {"data.validation_fraction": 0.1}


@dataclass(frozen=True)
class Plot:
    """One panel of the study figure.

    Attributes:
        kind: ``"line"`` (``y`` against the grid key ``x``, one line per variant and other grid
            values) or ``"scatter"`` (metric ``y`` against metric ``x``, one point per grid
            point, annotated with the value of the grid key ``label``).
        x: a grid key (line) or a metric (scatter).
        y: a metric.
        label: scatter only: the grid key whose values annotate the points.
        stage: ``"validation"`` or ``"final"`` (default: the validation stage if there is one,
            since it holds every grid point).
        logx: logarithmic x axis.
        title: panel title (default: ``y`` vs ``x``).
    """

    kind: str
    x: str
    y: str
    label: str = ""
    stage: str = ""
    logx: bool = False
    title: str = ""


@dataclass(frozen=True)
class Selection:
    """The validation stage: which grid keys are chosen, on what, with which seeds."""

    metric: str
    keys: tuple[str, ...]
    seeds: tuple[int, ...]
    mode: str = "max"
    overrides: dict[str, Any] = field(default_factory=lambda: dict(_DEFAULT_VALIDATION))


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep.

    Attributes:
        stage: ``"validation"`` or ``"final"``.
        name: the run folder's name (unique within the stage).
        variant: the variant's name (``""`` without variants).
        point: the grid values of this run, by key.
        seed: the seed.
        overrides: every ``--set`` override of the run, in order of application.
        cfg: the resolved config.
    """

    stage: str
    name: str
    variant: str
    point: dict[str, Any]
    seed: int
    overrides: dict[str, Any]
    cfg: dict[str, Any]

    @property
    def group(self) -> tuple[str, tuple[Any, ...]]:
        """The grid point this run belongs to (everything but the seed)."""
        return self.variant, tuple(_freeze(v) for v in self.point.values())


@dataclass
class Sweep:
    """A loaded sweep file, with ``--budget`` and ``--set`` applied.

    Attributes:
        name: the study name (``study_NAME.*``).
        description: one paragraph for the report.
        source: the sweep file.
        base: the recipe or config (raw TOML) every run starts from.
        base_label: ``recipe NAME`` or the config's path, for the report and the commands.
        base_args: the ``contrastkit train`` arguments naming the base (``--recipe NAME`` or
            the config path).
        budget: the recipe budget every run uses (``""``: the recipe's default).
        seeds: the seeds of the final stage.
        metrics: the columns of the report tables.
        overrides: the sweep's ``set`` (plus the command line's ``--set``).
        grid: grid key -> values.
        variants: variant name -> overrides (``{"": {}}`` without variants).
        select: the validation stage, or None.
        plots: the figure's panels.
    """

    name: str
    description: str
    source: Path
    base: dict[str, Any]
    base_label: str
    base_args: list[str]
    budget: str
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    overrides: dict[str, Any]
    grid: dict[str, list[Any]]
    variants: dict[str, dict[str, Any]]
    select: Selection | None
    plots: tuple[Plot, ...]

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages in order of execution."""
        return (VALIDATION, FINAL) if self.select else (FINAL,)

    def short_keys(self) -> dict[str, str]:
        """A short label per grid key: its last component, unless two keys share it."""
        last = {k: k.rsplit(".", 1)[-1] for k in self.grid}
        clash = {v for v in last.values() if list(last.values()).count(v) > 1}
        return {k: (k if v in clash else v) for k, v in last.items()}


def list_sweeps() -> dict[str, str]:
    """Names of the shipped sweeps and their descriptions."""
    out = {}
    for path in sorted(SWEEPS_DIR.glob("*.toml")):
        out[path.stem] = str(config_mod.load_toml(path).get("description", "")).strip()
    return out


def sweep_path(name_or_path: str) -> Path:
    """A shipped sweep's file, or the path of a user's sweep file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"sweep: {path} does not exist")
        return path
    shipped = SWEEPS_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ConfigError(
            f"sweep: unknown sweep {name_or_path!r}; shipped: {', '.join(list_sweeps())} "
            "(or give the path of a sweep .toml file)"
        )
    return shipped


def _expect(value: Any, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}: expected {what}, got {type(value).__name__} ({value!r})")
    return value


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    _expect(value, list, where, "a non-empty list of integer seeds")
    if not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ConfigError(f"{where}: expected a non-empty list of integer seeds, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: seeds repeat: {value!r}")
    return tuple(value)


def _table(value: Any, where: str) -> dict[str, Any]:
    return dict(_expect(value, Mapping, where, "a table"))


def _apply_budget(raw: dict[str, Any], table: Mapping[str, Any], where: str) -> None:
    """Merge a ``[budgets.NAME]`` table into the sweep: tables merge by key, the rest replaces."""
    for key, value in table.items():
        if key not in _TOP_KEYS - {"budgets", "budget", "name"}:
            raise ConfigError(f"{where}.{key}: unknown key; expected one of {sorted(_TOP_KEYS)}")
        if isinstance(value, Mapping) and isinstance(raw.get(key), Mapping):
            raw[key] = {**raw[key], **copy.deepcopy(dict(value))}
        else:
            raw[key] = copy.deepcopy(value)


def _dotted(table: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            keys += _dotted(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _canonical(key: str) -> str:
    """``objective.x`` and ``objectives.main.x`` are the same key."""
    return "objectives.main" + key[len("objective") :] if key.split(".")[0] == "objective" else key


def load_sweep(
    name_or_path: str, budget: str | None = None, extra: Mapping[str, Any] | None = None
) -> Sweep:
    """Load and check a sweep file; apply ``budget`` (``--budget``) and ``extra`` (``--set``).

    ``budget`` selects the recipe's ``[budgets.NAME]`` for every run and the sweep file's own
    ``[budgets.NAME]``; at least one must exist. The recipe budget's keys win over the sweep's
    ``set`` (which describes the full-size runs); the sweep budget's ``set`` wins over both, and
    its other keys (``seeds``, ``grid``, ``select``, ...) replace or, for tables, update the
    sweep's.

    Raises:
        ConfigError: naming the sweep key at fault.
    """
    path = sweep_path(name_or_path)
    raw = config_mod.load_toml(path)
    where = str(path)
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}: {key}: unknown key; expected one of {sorted(_TOP_KEYS)}")
    budgets = _table(raw.pop("budgets", {}), f"{where}: budgets")
    budget = str(raw.get("budget", "")) if budget is None else budget
    if bool(raw.get("recipe")) == bool(raw.get("config")):
        raise ConfigError(f"{where}: give either recipe = NAME or config = PATH (one of them)")
    if raw.get("recipe"):
        base_file = config_mod.recipe_path(_expect(raw["recipe"], str, f"{where}: recipe", "str"))
        base_args = ["--recipe", raw["recipe"]]
        base_label = f"recipe `{raw['recipe']}`"
    else:
        cfg_path = Path(_expect(raw["config"], str, f"{where}: config", "a path"))
        base_file = cfg_path if cfg_path.is_absolute() else path.parent / cfg_path
        base_args = [str(base_file)]
        base_label = f"config `{base_file}`"
    base = config_mod.load_toml(base_file)
    recipe_budgets = base.get("budgets", {})
    overrides = _table(raw.get("set", {}), f"{where}: set")
    if budget:
        if budget not in budgets and budget not in recipe_budgets:
            raise ConfigError(
                f"--budget: {budget!r} is neither a budget of {base_label} "
                f"({sorted(recipe_budgets) or 'none'}) nor of the sweep "
                f"({sorted(budgets) or 'none'})"
            )
        if budget in recipe_budgets:  # the budget's sizes win over the sweep's full-size ones
            sized = {_canonical(k) for k in _dotted(recipe_budgets[budget])}
            overrides = {k: v for k, v in overrides.items() if _canonical(k) not in sized}
            overrides = {"budget": budget, **overrides}
        if budget in budgets:
            table = _table(budgets[budget], f"{where}: budgets.{budget}")
            overrides.update(_table(table.pop("set", {}), f"{where}: budgets.{budget}.set"))
            _apply_budget(raw, table, f"{where}: budgets.{budget}")
    overrides.update(extra or {})
    grid = _table(raw.get("grid", {}), f"{where}: grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{key}: expected a non-empty list of values")
        if key == "seed":
            raise ConfigError(f"{where}: grid.seed: list the seeds in `seeds`, not in the grid")
    variants = {
        name: _table(v, f"{where}: variants.{name}")
        for name, v in _table(raw.get("variants", {}), f"{where}: variants").items()
    } or {"": {}}
    name = _expect(raw.get("name", path.stem), str, f"{where}: name", "str")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ConfigError(f"{where}: name: expected letters, digits, '_', '-' or '.', got {name!r}")
    metrics = raw.get("metrics", ["knn_acc", "linear_probe_acc"])
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ConfigError(f"{where}: metrics: expected a list of metric names")
    sweep = Sweep(
        name=name,
        description=str(raw.get("description", "")).strip(),
        source=path,
        base=base,
        base_label=base_label,
        base_args=base_args,
        budget=budget if budget in recipe_budgets else "",
        seeds=_seeds(raw.get("seeds", [0]), f"{where}: seeds"),
        metrics=tuple(metrics),
        overrides=overrides,
        grid=grid,
        variants=variants,
        select=_selection(raw.get("select"), grid, f"{where}: select"),
        plots=tuple(_plot(p, f"{where}: plots[{i}]") for i, p in enumerate(raw.get("plots", []))),
    )
    return sweep


def _selection(raw: Any, grid: Mapping[str, Any], where: str) -> Selection | None:
    if raw is None:
        return None
    table = _table(raw, where)
    for key in table:
        if key not in _SELECT_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key; expected one of {sorted(_SELECT_KEYS)}")
    metric = _expect(table.get("metric"), str, f"{where}.metric", "a metric name")
    keys = table.get("keys", list(grid))
    if not isinstance(keys, list) or not keys or any(k not in grid for k in keys):
        raise ConfigError(f"{where}.keys: expected grid keys among {sorted(grid)}, got {keys!r}")
    mode = table.get("mode", "max")
    if mode not in ("max", "min"):
        raise ConfigError(f"{where}.mode: expected 'max' or 'min', got {mode!r}")
    return Selection(
        metric=metric,
        keys=tuple(keys),
        seeds=_seeds(table.get("seeds", [0]), f"{where}.seeds"),
        mode=mode,
        overrides=_table(table.get("set", _DEFAULT_VALIDATION), f"{where}.set"),
    )


def _plot(raw: Any, where: str) -> Plot:
    table = _table(raw, where)
    for key in table:
        if key not in _PLOT_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key; expected one of {sorted(_PLOT_KEYS)}")
    if table.get("kind") not in PLOT_KINDS:
        raise ConfigError(f"{where}.kind: expected one of {PLOT_KINDS}, got {table.get('kind')!r}")
    if table.get("stage", "") not in ("", VALIDATION, FINAL):
        raise ConfigError(f"{where}.stage: expected '{VALIDATION}' or '{FINAL}'")
    for key in ("x", "y"):
        _expect(table.get(key), str, f"{where}.{key}", "a name")
    return Plot(**table)


# -- the runs ----------------------------------------------------------------------------------
def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def format_value(value: Any) -> str:
    """A grid value as it appears in run names and tables (``0.1``, ``[0.2, 1.0]``)."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_name(sweep: Sweep, variant: str, point: Mapping[str, Any], seed: int) -> str:
    """``VARIANT-KEY=VALUE-...-sSEED`` with characters other than ``[A-Za-z0-9._=-]`` as ``_``."""
    short = sweep.short_keys()
    parts = [variant] if variant else []
    parts += [f"{short[k]}={format_value(v)}" for k, v in point.items()]
    parts.append(f"s{seed}")
    return re.sub(r"[^A-Za-z0-9._=-]", "_", "-".join(parts))


def make_run(
    sweep: Sweep, stage: str, variant: str, point: Mapping[str, Any], seed: int
) -> RunSpec:
    """Resolve one run's config (a bad key is a :class:`ConfigError` naming the run)."""
    overrides = {**sweep.overrides, **sweep.variants[variant], **point, "seed": seed}
    if stage == VALIDATION and sweep.select is not None:
        overrides.update(sweep.select.overrides)
    overrides = copy.deepcopy(overrides)  # resolve() may write into tables given as values
    name = run_name(sweep, variant, point, seed)
    try:
        cfg = config_mod.resolve(sweep.base, copy.deepcopy(overrides))
    except ConfigError as err:
        raise ConfigError(f"sweep run {stage}/{name}: {err}") from err
    return RunSpec(stage, name, variant, dict(point), seed, overrides, cfg)


def grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    """Every combination of the grid values, in file order."""
    keys = list(sweep.grid)
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*sweep.grid.values())
    ]


def plan_stage(
    sweep: Sweep,
    stage: str,
    points: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[RunSpec]:
    """The runs of a stage: every variant × grid point × seed.

    ``points``: per variant, the grid points of the final stage (chosen on validation).
    """
    seeds = sweep.select.seeds if stage == VALIDATION and sweep.select else sweep.seeds
    runs = []
    for variant in sweep.variants:
        chosen = grid_points(sweep) if points is None else points.get(variant, [])
        for point in chosen:
            runs += [make_run(sweep, stage, variant, point, seed) for seed in seeds]
    return runs


def final_count(sweep: Sweep) -> int:
    """How many runs the final stage will have (known before the validation stage ends)."""
    points = grid_points(sweep)
    if sweep.select is not None:
        free = [k for k in sweep.grid if k not in sweep.select.keys]
        points = list({tuple(_freeze(p[k]) for k in free): p for p in points}.values())
    return len(sweep.variants) * len(points) * len(sweep.seeds)
