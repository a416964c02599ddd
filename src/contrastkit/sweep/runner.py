"""Run a sweep's runs as ordinary ``contrastkit train`` processes: resumable, ``jobs`` at a time.

Each run is its own run directory ``OUT/STAGE/NAME`` with its own log (``sweep.log``). A run
whose ``results.json`` exists is skipped; one with a checkpoint is resumed
(``contrastkit train --resume``); one that died before its first checkpoint starts again. A run
that fails (non-zero exit: a diverged loss, a bad objective parameter, a killed process) is
reported and the others go on.
"""

from __future__ import annotations

import copy
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from contrastkit.sweep.aggregate import RunResult, run_metrics
from contrastkit.sweep.spec import RunSpec, Sweep
from contrastkit.train import config as config_mod
from contrastkit.train.config import ConfigError

# keys a sweep sets per invocation: a run made with other values is still the same run
_VOLATILE = (("train", "threads"), ("train", "progress"))


def default_threads(jobs: int) -> int:
    """``max(1, cores // jobs)``: the cores this process may use, shared by ``jobs`` runs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS)
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


def toml_literal(value: Any) -> str:
    """``value`` as a TOML literal for ``--set KEY=VALUE`` (tables inline)."""
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(str(k))} = {toml_literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return config_mod._toml_value(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else config_mod._toml_value(key)


def _comparable(cfg: Mapping[str, Any]) -> str:
    cfg = copy.deepcopy(dict(cfg))
    for table, key in _VOLATILE:
        cfg.get(table, {}).pop(key, None)
    return config_mod.dumps(cfg)


def _stored_config(path: Path) -> dict[str, Any]:
    """A run's ``config.toml``, resolved again with today's defaults.

    Keys added to the defaults since the run was made take their defaults (which keep the old
    behaviour), so a library update does not turn finished runs into changed ones. A config
    that no longer resolves is compared as is.
    """
    raw = config_mod.load_toml(path)
    try:
        return config_mod.resolve(raw)
    except ConfigError:
        return raw


def run_dir(out: Path, spec: RunSpec) -> Path:
    """The run directory of ``spec`` in the sweep folder ``out``."""
    return out / spec.stage / spec.name


def run_state(spec: RunSpec, path: Path) -> str:
    """Where a run stands.

    Returns:
        ``"fresh"``, ``"finished"``, ``"resume"`` (has a checkpoint), ``"restart"`` (died before
        its first checkpoint) or ``"changed"`` (made with another config than the sweep's now).
    """
    stored = path / "config.toml"
    if not stored.is_file():
        return "fresh"
    if _comparable(_stored_config(stored)) != _comparable(spec.cfg):
        return "changed"
    if (path / "results.json").is_file():
        return "finished"
    if any((path / "checkpoints" / n).is_file() for n in ("last.pt", "prev.pt")):
        return "resume"
    return "restart"


def train_command(sweep: Sweep, spec: RunSpec, path: Path, state: str, threads: int) -> list[str]:
    """The ``contrastkit train`` arguments that start or resume the run."""
    if state == "resume":
        args = ["train", "--resume", str(path)]
        stored = config_mod.load_toml(path / "config.toml")
        if stored.get("train", {}).get("threads") != threads:
            args += ["--allow-config-change", "--set", f"train.threads={threads}"]
        return args
    args = ["train", *sweep.base_args]
    for key, value in spec.overrides.items():
        args += ["--set", f"{key}={toml_literal(value)}"]
    args += ["--set", f"train.threads={threads}", "--out", str(path), "--no-progress"]
    return args + (["--overwrite"] if state == "restart" else [])


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Progress:
    """Counts runs over the whole sweep and estimates the time left from finished runs."""

    name: str
    total: int
    jobs: int = 1
    stream: IO[str] = field(default_factory=lambda: sys.stderr)
    done: int = 0
    t0: float = field(default_factory=time.perf_counter)
    durations: list[float] = field(default_factory=list)

    def eta(self, running: Mapping[str, float]) -> str:
        """Time left: the mean finished-run time × runs left, shared by ``jobs``."""
        if not self.durations:
            return "time left: after the first run"
        mean = sum(self.durations) / len(self.durations)
        now = time.perf_counter()
        left = sum(max(0.0, mean - (now - t)) for t in running.values())
        left += (self.total - self.done - len(running)) * mean
        return f"~{_duration(left / max(1, min(self.jobs, self.total - self.done)))} left"

    def say(self, text: str, running: Mapping[str, float] | None = None) -> None:
        """One progress line: ``sweep NAME [i/N] text · elapsed · time left``."""
        elapsed = _duration(time.perf_counter() - self.t0)
        tail = f" · {elapsed} elapsed · {self.eta(running or {})}"
        print(f"sweep {self.name} {text}{tail}", file=self.stream, flush=True)


def _failure(log: Path, code: int) -> str:
    reason = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "Error" in ln]
    last = (errors or lines or [""])[-1]
    return f"{reason}: {last[:400]}" if last else reason


class SweepLock:
    """An exclusive lock on a sweep folder: two sweeps never run the same runs at once."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self._file = (out / ".sweep.lock").open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._file.close()
            raise ConfigError(f"--out: another sweep is running in {out}") from err

    def release(self) -> None:
        """Release the lock."""
        self._file.close()


@dataclass
class _Running:
    spec: RunSpec
    index: int
    proc: subprocess.Popen[bytes]
    log: IO[str]
    t0: float


def execute(
    sweep: Sweep,
    specs: Sequence[RunSpec],
    out: Path,
    progress: Progress,
    *,
    jobs: int = 1,
    threads: int = 1,
    train_runs: bool = True,
    status_every: float = 60.0,
) -> list[RunResult]:
    """Run (or skip, or resume) every run of ``specs``; return their results in order.

    ``train_runs=False`` only reads what is there (``--aggregate-only``).
    On ``KeyboardInterrupt`` the running runs are interrupted (their last checkpoints stay) and
    the interrupt is re-raised.
    """
    results: dict[int, RunResult] = {}
    pending: list[tuple[int, RunSpec, str]] = []
    for i, spec in enumerate(specs):
        path = run_dir(out, spec)
        state = run_state(spec, path)
        if state == "finished":
            results[i] = RunResult(spec, "finished", metrics=run_metrics(path))
            progress.done += 1
        elif state == "changed":
            error = f"{path} was made with another config; delete it or use another --out"
            results[i] = RunResult(spec, "failed", error=error)
            progress.done += 1
        elif not train_runs:
            results[i] = RunResult(spec, "not run", error=f"not run ({state})")
        else:
            pending.append((i, spec, state))
    skipped = sum(r.status == "finished" for r in results.values())
    if skipped and train_runs:
        progress.say(f"[{progress.done}/{progress.total}] {skipped} runs already finished")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    running: dict[str, _Running] = {}
    last_status = time.perf_counter()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, spec, state = pending.pop(0)
                path = run_dir(out, spec)
                path.mkdir(parents=True, exist_ok=True)
                args = train_command(sweep, spec, path, state, threads)
                log = (path / "sweep.log").open("a")
                log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} ({state}): ")
                log.write(f"contrastkit {shlex.join(args)}\n")
                log.flush()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "contrastkit.cli", *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # an interrupt reaches a run through the sweep only
                )
                number = progress.done + len(running) + 1
                running[spec.name + spec.stage] = _Running(spec, i, proc, log, time.perf_counter())
                verb = {"resume": "resuming", "restart": "restarting"}.get(state, "running")
                progress.say(
                    f"[{number}/{progress.total}] {verb} {spec.stage}/{spec.name}",
                    {k: r.t0 for k, r in running.items()},
                )
            for key, r in list(running.items()):
                code = r.proc.poll()
                if code is None:
                    continue
                r.log.close()
                del running[key]
                wall = time.perf_counter() - r.t0
                path = run_dir(out, r.spec)
                progress.done += 1
                if code == 0 and (path / "results.json").is_file():
                    progress.durations.append(wall)
                    metrics = run_metrics(path)
                    results[r.index] = RunResult(r.spec, "finished", metrics=metrics, wall_s=wall)
                    shown = ", ".join(
                        f"{m} {metrics[m]:.4f}" for m in sweep.metrics[:2] if m in metrics
                    )
                    what = f"finished {r.spec.stage}/{r.spec.name} in {_duration(wall)}"
                    text = f"{what} ({shown})" if shown else what
                else:
                    error = _failure(path / "sweep.log", code)
                    results[r.index] = RunResult(r.spec, "failed", error=error, wall_s=wall)
                    text = f"FAILED {r.spec.stage}/{r.spec.name}: {error} (log: {path}/sweep.log)"
                progress.say(
                    f"[{progress.done}/{progress.total}] {text}",
                    {k: x.t0 for k, x in running.items()},
                )
            if running and time.perf_counter() - last_status > status_every:
                last_status = time.perf_counter()
                names = ", ".join(f"{r.spec.stage}/{r.spec.name}" for r in running.values())
                first, last = progress.done + 1, progress.done + len(running)
                span = f"{first}" if first == last else f"{first}-{last}"
                progress.say(
                    f"[{span}/{progress.total}] running {names}",
                    {k: r.t0 for k, r in running.items()},
                )
            if running:
                time.sleep(0.2)
    finally:
        _stop(list(running.values()))
    return [results[i] for i in range(len(specs))]


def _stop(running: Sequence[_Running]) -> None:
    """Interrupt runs still going (they keep their last checkpoint); kill what does not stop."""
    for r in running:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGINT)
    deadline = time.perf_counter() + 30
    for r in running:
        try:
            r.proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        r.log.close()
