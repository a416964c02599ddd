"""``contrastkit analyze``: every diagnostic of an embedding set, as JSON and HTML.

Examples::

    contrastkit analyze emb.npy --labels labels.npy --out report/
    contrastkit analyze image.pt --second text.pt --out gap_report/
    contrastkit analyze feats.safetensors --key embeddings --labels y.txt

Exit status: 0 on success, 2 on a bad input (the message names the file; no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_list(text: str, cast: type, name: str) -> list:  # type: ignore[type-arg]
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{name}: expected comma-separated numbers") from err
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{name}: expected positive values, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``contrastkit analyze``."""
    p = argparse.ArgumentParser(
        prog="contrastkit analyze",
        description="Diagnose an embedding set: writes metrics.json and a self-contained "
        "report.html (plots embedded).",
    )
    p.add_argument("embeddings", help="(n, d) embeddings: .npy, .npz, .pt or .safetensors")
    p.add_argument("--labels", help="class ids (n,): .npy, .pt, .safetensors or .txt")
    p.add_argument("--second", help="second modality (n, d), row-paired with the embeddings")
    p.add_argument("--key", help="tensor name inside a dict-like embeddings file")
    p.add_argument("--second-key", help="tensor name inside the second-modality file")
    p.add_argument("--labels-key", help="tensor name inside a dict-like labels file")
    p.add_argument("--out", default="contrastkit_report", help="output directory")
    p.add_argument("--title", default=None, help="report title")
    p.add_argument(
        "--ks", default="1,5,10", type=lambda s: _parse_list(s, int, "--ks"), help="retrieval k"
    )
    p.add_argument(
        "--temperatures",
        default="0.05,0.1,0.2,0.5",
        type=lambda s: _parse_list(s, float, "--temperatures"),
        help="temperatures of the hardness profiles",
    )
    p.add_argument("--knn-k", type=int, default=200)
    p.add_argument("--knn-temperature", type=float, default=0.1)
    p.add_argument(
        "--max-samples", type=int, default=10_000, help="rows used by the pairwise metrics"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-html", action="store_true", help="write metrics.json only")
    p.add_argument("--overview", help="also write all plots as one PNG to this path")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str]) -> int:
    """Run ``contrastkit analyze`` with ``argv`` (without the command name); return the status.

    Args:
        argv: command-line arguments.

    Returns:
        0 on success, 2 on a bad input or bad option.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse prints its own message
        return int(exc.code or 0)
    from contrastkit.analyze.io import InputError, load_embeddings, load_labels

    def fail(message: str) -> int:
        print(f"contrastkit analyze: error: {message}", file=sys.stderr)
        return 2

    if args.max_samples < 2:
        return fail(f"--max-samples must be >= 2, got {args.max_samples}")
    if args.knn_k < 1 or args.knn_temperature <= 0:
        return fail("--knn-k must be >= 1 and --knn-temperature > 0")
    try:
        x = load_embeddings(args.embeddings, key=args.key)
        labels = load_labels(args.labels, x.shape[0], key=args.labels_key) if args.labels else None
        second = None
        if args.second:
            second = load_embeddings(args.second, key=args.second_key, what="second modality")
            if second.shape[0] != x.shape[0]:
                raise InputError(
                    f"second modality '{args.second}' has {second.shape[0]} rows but embeddings "
                    f"'{args.embeddings}' have {x.shape[0]}"
                )
            if second.shape[1] != x.shape[1]:
                raise InputError(
                    f"second modality '{args.second}' has dimension {second.shape[1]} but "
                    f"embeddings '{args.embeddings}' have {x.shape[1]}"
                )
    except InputError as err:
        return fail(str(err))

    from contrastkit.analyze.analysis import analyze
    from contrastkit.analyze.report import render_html, save_overview

    try:
        result = analyze(
            x,
            labels=labels,
            second=second,
            ks=args.ks,
            temperatures=args.temperatures,
            knn_k=args.knn_k,
            knn_temperature=args.knn_temperature,
            max_samples=args.max_samples,
            seed=args.seed,
            progress=not args.quiet,
        )
    except ValueError as err:
        return fail(str(err))
    result.metrics["inputs"]["embeddings_file"] = str(args.embeddings)
    if args.labels:
        result.metrics["inputs"]["labels_file"] = str(args.labels)
    if args.second:
        result.metrics["inputs"]["second_file"] = str(args.second)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return fail(f"cannot create output directory '{out}': {err}")
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    title = args.title or f"contrastkit report: {Path(args.embeddings).name}"
    if not args.no_html:
        (out / "report.html").write_text(render_html(result, title=title))
    if args.overview:
        save_overview(result, args.overview, title=title)
    print(f"wrote {out / 'metrics.json'}" + ("" if args.no_html else f" and {out / 'report.html'}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
