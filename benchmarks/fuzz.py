"""Fuzz every public loss with generated valid, extreme and invalid calls; tabulate the outcomes.

Each call is judged as ``clear_error`` / ``correct`` (finite, equal to the same call in float64) /
``silent_nonfinite`` / ``silent_suspicious`` / ``unclear_crash`` (definitions and the generated
mutations: ``tests/losses/_fuzz_cases.py``). The target is zero silent non-finite results and zero
unclear crashes.

Usage (about 20 minutes on one core for the default 2 400 calls per target, > 10⁵ in all)::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fuzz.py
    PYTHONPATH=src python benchmarks/fuzz.py --calls 50 --out /tmp/fuzz   # a quick look

Writes ``benchmarks/results/fuzz.md`` and ``fuzz.json`` (per target: counts per outcome, and up to
five examples of every outcome other than ``correct`` / ``clear_error`` with the seed that
reproduces them: ``run_case(make_case(TARGET_BY_LABEL[label], seed))``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "losses"))

from _fuzz_cases import OUTCOMES, TARGETS, make_case, run_case  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BAD = ("silent_nonfinite", "silent_suspicious", "unclear_crash")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2400, help="generated calls per target")
    parser.add_argument("--only", nargs="*", help="target labels to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    parser.add_argument("--name", default="fuzz", help="output file stem")
    parser.add_argument(
        "--before",
        type=Path,
        help="the JSON of an earlier run (e.g. on the previous release) to show its totals too",
    )
    parser.add_argument("--before-label", default="before", help="row name of --before")
    args = parser.parse_args()

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    targets = [t for t in TARGETS if not args.only or t.label in args.only]
    counts: dict[str, Counter[str]] = {}
    examples: dict[str, dict[str, list[dict[str, object]]]] = {}
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    start = time.perf_counter()
    for target in targets:
        tally: Counter[str] = Counter()
        found: dict[str, list[dict[str, object]]] = defaultdict(list)
        t0 = time.perf_counter()
        for seed in range(args.calls):
            case = make_case(target, seed)
            result = run_case(case)
            tally[result.outcome] += 1
            if result.outcome in BAD:
                by_kind[case.kind.split(" ")[0].split("=")[0]][result.outcome] += 1
                if len(found[result.outcome]) < 5:
                    found[result.outcome].append(
                        {"seed": seed, "kind": case.kind, "reason": result.reason[:200]}
                    )
        counts[target.label] = tally
        examples[target.label] = dict(found)
        bad = {k: tally[k] for k in BAD if tally[k]}
        print(f"{target.label:<32} {time.perf_counter() - t0:6.1f}s  {dict(tally)}  {bad or ''}")
    elapsed = time.perf_counter() - start
    before = None
    if args.before is not None:
        before = (args.before_label, json.loads(args.before.read_text())["totals"])
    write(args.out, args.name, counts, examples, elapsed, args.calls, before)


def write(
    out: Path,
    name: str,
    counts: dict[str, Counter[str]],
    examples: dict[str, dict[str, list[dict[str, object]]]],
    elapsed: float,
    calls: int,
    before: tuple[str, dict[str, int]] | None = None,
) -> None:
    """Write ``{name}.json`` and ``{name}.md`` to ``out`` (``before``: an earlier run's totals)."""
    out.mkdir(parents=True, exist_ok=True)
    totals: Counter[str] = Counter()
    for tally in counts.values():
        totals.update(tally)
    n = sum(totals.values())
    meta = {
        "command": "PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fuzz.py"
        + ("" if calls == 2400 else f" --calls {calls}"),
        "calls": n,
        "seconds": round(elapsed, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    (out / f"{name}.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "totals": {k: totals[k] for k in OUTCOMES},
                "before": None if before is None else {"label": before[0], "totals": before[1]},
                "targets": {t: {k: c[k] for k in OUTCOMES} for t, c in counts.items()},
                "examples": examples,
            },
            indent=1,
        )
        + "\n"
    )
    header = "| target | " + " | ".join(OUTCOMES) + " |"
    lines = [
        "# Fuzzing every public loss",
        "",
        f"`{meta['command']}` — {n} generated calls in {elapsed / 60:.1f} min "
        f"(torch {meta['torch']}, one CPU thread). Outcomes as defined in "
        "`tests/losses/_fuzz_cases.py`: a clear error names an argument of the function; "
        "a correct value is finite and equals the same call in float64 (value and gradients).",
        "",
        "| | " + " | ".join(OUTCOMES) + " |",
        "|---|" + "---:|" * len(OUTCOMES),
        "| **total** | "
        + " | ".join(f"**{totals[k]}** ({100 * totals[k] / max(n, 1):.2f} %)" for k in OUTCOMES)
        + " |",
    ]
    if before is not None:
        label, old = before
        m = sum(old.values())
        lines.append(
            f"| {label} | "
            + " | ".join(f"{old[k]} ({100 * old[k] / max(m, 1):.2f} %)" for k in OUTCOMES)
            + " |"
        )
        lines += ["", f"The *{label}* row: the same generated calls and judge, on those sources."]
    lines += [
        "",
        header,
        "|---|" + "---:|" * len(OUTCOMES),
    ]
    for target, tally in counts.items():
        lines.append(f"| {target} | " + " | ".join(str(tally[k]) for k in OUTCOMES) + " |")
    bad_examples = [
        (t, outcome, ex)
        for t, found in examples.items()
        for outcome, exs in found.items()
        for ex in exs
    ]
    if bad_examples:
        lines += ["", "## Examples of the remaining findings", ""]
        lines += [
            f"- `{t}` seed {ex['seed']} ({ex['kind']}): {outcome} — {ex['reason']}"
            for t, outcome, ex in bad_examples
        ]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
