"""The ``contrastkit`` command line: one entry point, one module per sub-command.

Each sub-command lives with the code it drives and exposes ``main(argv) -> int``; this file only
routes, so importing it stays cheap (torch is imported by the sub-command that needs it).
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, function, one-line help)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "bench": ("contrastkit.bench.cli", "main", "side-by-side speed/memory benchmark vs peers"),
    "train": ("contrastkit.train.cli", "main_train", "train an encoder from a recipe or config"),
    "recipes": ("contrastkit.train.cli", "main_recipes", "list the shipped training recipes"),
    "eval": ("contrastkit.train.cli", "main_eval", "re-evaluate a run directory's checkpoint"),
    "embed": ("contrastkit.train.cli", "main_embed", "write a trained encoder's embeddings (.npy)"),
    "analyze": ("contrastkit.analyze.cli", "main", "diagnose an embedding set: JSON + HTML report"),
    "sweep": ("contrastkit.sweep.cli", "main", "run a study: a grid x seeds of runs, mean ± std"),
}


def _usage() -> str:
    lines = ["usage: contrastkit COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in _COMMANDS.items()]
    lines += ["", "Run `contrastkit COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Route ``contrastkit COMMAND ...`` to the command's module."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"contrastkit: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = _COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    result: int = func(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
