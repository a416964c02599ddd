"""Read a sweep's run directories and reduce them to mean ± std per grid point.

Any number a run writes can be a metric:

* a key of ``results.json``, nested keys joined by dots (``final_loss``, ``zero_shot.all_way``);
  ``knn_acc`` and ``linear_probe_acc`` are the trained encoder's row, ``rows.NAME.KEY`` any row
  (``rows.raw.knn_acc``, ``rows.random_init.linear_probe_acc``);
* ``KIND.KEY``: the last record of kind ``KIND`` in ``metrics.jsonl`` (``epoch.uniformity``,
  ``step.loss``, or the records another part of the trainer writes, e.g. ``task.KEY``);
* a bare key of the last epoch record that ``results.json`` does not have (``uniformity``,
  ``tolerance``, ``alignment``).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrastkit.sweep.spec import RunSpec, Selection
from contrastkit.train.log import read_records


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flatten(node: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif _numeric(node) and math.isfinite(node):
        out[prefix.rstrip(".")] = float(node)


def _row_slug(encoder: str) -> str:
    """``"trained (InfoNCELoss)"`` -> ``trained``, ``"random-init encoder"`` -> ``random_init``."""
    head = encoder.split(" (")[0].split()[0] if encoder.strip() else "row"
    return re.sub(r"\W+", "_", head).strip("_").lower()


def run_metrics(run_dir: Path) -> dict[str, float]:
    """Every number of a finished run, by metric name (see the module docstring)."""
    results = json.loads((run_dir / "results.json").read_text())
    out: dict[str, float] = {}
    rows = results.pop("rows", [])
    _flatten(results, "", out)
    for i, row in enumerate(rows):
        metrics = {k: v for k, v in row.items() if k != "encoder"}
        _flatten(metrics, f"rows.{_row_slug(str(row.get('encoder', '')))}.", out)
        if i == 0:  # the trained encoder
            _flatten(metrics, "", out)
    last: dict[str, dict[str, Any]] = {}
    for record in read_records(run_dir):
        last[str(record.get("kind", "record"))] = record
    for kind, record in last.items():
        values = {k: v for k, v in record.items() if k != "kind"}
        _flatten(values, f"{kind}.", out)
        if kind == "epoch":
            for key, value in values.items():
                if key not in out and _numeric(value) and math.isfinite(value):
                    out[key] = float(value)
    return out


def epoch_series(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """``(epoch, value)`` of ``key`` over the run's epoch records."""
    return [
        (int(r["epoch"]), float(r[key]))
        for r in read_records(run_dir)
        if r.get("kind") == "epoch" and _numeric(r.get(key))
    ]


@dataclass
class RunResult:
    """What one run of the sweep produced.

    Attributes:
        spec: the run.
        status: ``"finished"``, ``"failed"`` or ``"not run"``.
        error: the failure's last message lines.
        metrics: its numbers (empty unless finished).
        wall_s: wall time of the attempt in this invocation (None if not run here).
    """

    spec: RunSpec
    status: str
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    wall_s: float | None = None


@dataclass
class PointStats:
    """Mean ± sample std of each metric over the seeds of one grid point."""

    stage: str
    variant: str
    point: dict[str, Any]
    seeds: list[int]
    failed: list[str]
    mean: dict[str, float]
    std: dict[str, float | None]
    values: dict[str, list[float]]


def summarise(results: Sequence[RunResult], metrics: Iterable[str]) -> list[PointStats]:
    """Group runs by stage, variant and grid point (in run order); reduce ``metrics`` over seeds.

    ``metrics`` are reported first, then every other metric all finished runs of the point have.
    The std is the sample std (``n - 1``); None with a single finished seed.
    """
    groups: dict[tuple[str, str, Any], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.spec.stage, *r.spec.group), []).append(r)
    out = []
    wanted = list(metrics)
    for runs in groups.values():
        ok = [r for r in runs if r.status == "finished"]
        common = set.intersection(*(set(r.metrics) for r in ok)) if ok else set()
        names = [m for m in wanted if m in common] + sorted(common - set(wanted))
        values = {m: [r.metrics[m] for r in ok] for m in names}
        spec = runs[0].spec
        out.append(
            PointStats(
                stage=spec.stage,
                variant=spec.variant,
                point=dict(spec.point),
                seeds=[r.spec.seed for r in ok],
                failed=[f"{r.spec.name}: {r.status}" for r in runs if r.status != "finished"],
                mean={m: statistics.fmean(v) for m, v in values.items()},
                std={m: statistics.stdev(v) if len(v) > 1 else None for m, v in values.items()},
                values=values,
            )
        )
    return out


def choose(
    stats: Sequence[PointStats], select: Selection, grid_keys: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The final stage's points, chosen on the validation stage's ``stats``.

    Per variant and values of the grid keys not chosen: the values of ``select.keys`` with the
    best mean ``select.metric`` (the first in grid order wins a tie). Groups none of whose
    points finished get no final run.
    """
    free = [k for k in grid_keys if k not in select.keys]
    best: dict[tuple[str, tuple[str, ...]], PointStats] = {}
    sign = 1.0 if select.mode == "max" else -1.0
    for s in stats:
        if select.metric not in s.mean:
            continue
        key = (s.variant, tuple(json.dumps(s.point[k], sort_keys=True) for k in free))
        if key not in best or sign * s.mean[select.metric] > sign * best[key].mean[select.metric]:
            best[key] = s
    chosen: dict[str, list[dict[str, Any]]] = {}
    for (variant, _), s in best.items():
        chosen.setdefault(variant, []).append(dict(s.point))
    return chosen
