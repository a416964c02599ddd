"""``contrastkit sweep SWEEP``: run a study (a grid × seeds of training runs) and report it.

Exit status: 0 when every run finished, 1 when some failed or did not run (the report lists
them), 2 for a bad sweep file or option, 130 when interrupted (run the same command again to
resume).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from contrastkit.sweep import aggregate, report, runner, spec
from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="contrastkit sweep",
        description="Run a sweep: every grid point x seed (and named variant) as an ordinary "
        "training run in OUT/STAGE/NAME, then study_NAME.md/.json/.png with mean ± std per "
        "grid point. Run the same command again to resume: finished runs are skipped, "
        "interrupted ones resumed from their checkpoint.",
    )
    p.add_argument("sweep", nargs="?", help="a shipped sweep (see --list) or a sweep .toml file")
    p.add_argument("--list", action="store_true", help="list the shipped sweeps")
    p.add_argument(
        "--budget",
        default=None,
        help="recipe budget of every run (tiny, short, ...) and the "
        "sweep's own [budgets.NAME], if any",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key of every run, e.g. --set train.device=cuda",
    )
    p.add_argument("--out", help="sweep folder of the run directories (default: runs/sweep-NAME)")
    p.add_argument(
        "--report", help="folder of study_NAME.md/.json/.png (default: the sweep folder)"
    )
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument(
        "--threads", type=int, default=0, help="train.threads of each run (default: cores // jobs)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the runs and their overrides; run nothing"
    )
    p.add_argument(
        "--aggregate-only",
        action="store_true",
        help="train nothing: report the runs that are already finished",
    )
    return p


def _list() -> int:
    sweeps = spec.list_sweeps()
    width = max((len(n) for n in sweeps), default=0)
    for name, description in sweeps.items():
        print(f"{name:<{width}}  {description.splitlines()[0] if description else ''}")
    return 0


def _dry_run(sweep: spec.Sweep, out: Path, specs: list[spec.RunSpec]) -> int:
    for s in specs:
        state = runner.run_state(s, runner.run_dir(out, s))
        print(f"{s.stage}/{s.name}  [{state}]")
        for key, value in s.overrides.items():
            print(f"    {key} = {runner.toml_literal(value)}")
    if sweep.select is not None:
        print(
            f"then {spec.final_count(sweep)} final runs at the settings chosen on validation "
            f"(best mean {sweep.select.metric} over seeds {list(sweep.select.seeds)})"
        )
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """Entry point of ``contrastkit sweep``."""
    args = _parser().parse_args(argv)
    if args.list:
        return _list()
    if not args.sweep:
        print(
            "contrastkit sweep: error: give a sweep (shipped ones below) or --list\n",
            file=sys.stderr,
        )
        _list()
        return 2
    lock: runner.SweepLock | None = None
    previous: Any = None
    try:
        if args.jobs < 1 or args.threads < 0:
            raise ConfigError("--jobs: expected >= 1 (and --threads >= 0)")
        sweep = spec.load_sweep(args.sweep, args.budget, config_mod.parse_overrides(args.overrides))
        suffix = f"-{args.budget}" if args.budget else ""
        out = Path(args.out) if args.out else Path("runs") / f"sweep-{sweep.name}{suffix}"
        report_dir = Path(args.report) if args.report else out
        first = spec.plan_stage(sweep, sweep.stages[0])
        if args.dry_run:
            return _dry_run(sweep, out, first)
        changed = [
            s.name for s in first if runner.run_state(s, runner.run_dir(out, s)) == "changed"
        ]
        if changed and not args.aggregate_only:
            raise ConfigError(
                f"--out: {len(changed)} runs in {out} were made with another config than the "
                f"sweep's now (e.g. {changed[0]}); use another --out or delete them"
            )
        lock = runner.SweepLock(out)
        # the command that makes the runs: --aggregate-only only re-reads them
        made_by = [a for a in argv if a != "--aggregate-only"]
        command = shlex.join(["contrastkit", "sweep", *made_by])
        threads = args.threads or runner.default_threads(args.jobs)
        total = len(first) + (spec.final_count(sweep) if sweep.select is not None else 0)
        progress = runner.Progress(sweep.name, total, args.jobs)
        previous = signal.signal(signal.SIGTERM, _interrupt)

        def run(specs: list[spec.RunSpec]) -> list[aggregate.RunResult]:
            return runner.execute(
                sweep,
                specs,
                out,
                progress,
                jobs=args.jobs,
                threads=threads,
                train_runs=not args.aggregate_only,
            )

        results = run(first)
        chosen: dict[str, list[dict[str, Any]]] = {}
        if sweep.select is not None:
            val_stats = aggregate.summarise(results, sweep.metrics)
            chosen = aggregate.choose(val_stats, sweep.select, list(sweep.grid))
            final = spec.plan_stage(sweep, spec.FINAL, chosen)
            results += run(final)
        stats = aggregate.summarise(results, sweep.metrics)
        written = report.write(sweep, results, stats, chosen, command, out, report_dir)
    except ConfigError as err:
        print(f"contrastkit sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "contrastkit sweep: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        if lock is not None:
            lock.release()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    bad = [r for r in results if r.status != "finished"]
    print(f"written: {', '.join(map(str, written))}")
    if bad:
        print(
            f"contrastkit sweep: {len(bad)} of {len(results)} runs did not finish: "
            + "; ".join(f"{r.spec.stage}/{r.spec.name} ({r.error})" for r in bad[:5]),
            file=sys.stderr,
        )
        return 1
    return 0
