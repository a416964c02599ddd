"""The docstring examples of every module run as written (doctest), in ``make test`` and CI.

Examples run in their module's namespace, as ``python -m doctest`` would run them.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import contrastkit

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(contrastkit.__path__, prefix="contrastkit.")
    if not info.name.endswith("__main__")
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    torch.manual_seed(0)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples fail in {name}"


def test_the_runner_finds_the_examples() -> None:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = sum(
        len(t.examples)
        for name in MODULES
        for t in finder.find(importlib.import_module(name), name)
    )
    assert found > 150  # every loss documents an example
