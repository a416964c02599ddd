"""Property tests over every public loss: generated valid, extreme and invalid calls (hypothesis).

The CI-sized twin of ``benchmarks/fuzz.py`` (same cases, ``tests/losses/_fuzz_cases.py``): every
call must end in a clear error naming an argument or in a finite value equal to float64 —
never a silent non-finite or suspicious value, never an unclear crash.
"""

from __future__ import annotations

import pytest
import torch
from _fuzz_cases import TARGETS, Case, Target, make_case, names_an_argument, run_case
from hypothesis import given, settings
from hypothesis import strategies as st

import contrastkit as ck


@pytest.mark.parametrize("target", TARGETS, ids=[t.label for t in TARGETS])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6))
def test_every_call_is_a_clear_error_or_a_correct_value(target: Target, seed: int) -> None:
    case = make_case(target, seed)
    result = run_case(case)
    assert result.outcome in ("clear_error", "correct"), (
        f"{target.label} seed {seed} ({case.kind}): {result.outcome}: {result.reason}"
    )


def _nan_first_input(target: Target, seed: int) -> Case:
    case = make_case(target, seed, mutate=False)
    case.args[0] = torch.full_like(case.args[0], float("nan"))
    case.kind, case.expect = "NaN input", "invalid"
    return case


@pytest.mark.parametrize("target", TARGETS, ids=[t.label for t in TARGETS])
def test_nan_input_is_named_in_the_error(target: Target) -> None:
    result = run_case(_nan_first_input(target, 0))
    assert result.outcome == "clear_error", result.reason
    assert "contains NaN or inf" in result.reason


def test_the_judge_catches_a_silent_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    # Negative control: a loss that returns NaN without an error, checks on or off, is reported
    # as silent_nonfinite (not as a correct value, not excused by check_values=False).
    def silent_nan(a: torch.Tensor, b: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return (a * b).sum() * float("nan")

    monkeypatch.setattr(ck, "info_nce", silent_nan)
    case = make_case(TARGETS[0], 1, mutate=False)
    assert run_case(case).outcome == "silent_nonfinite"
    case.kwargs["check_values"] = False
    assert run_case(case).outcome == "silent_nonfinite"


def test_message_judge_needs_the_argument_name_first() -> None:
    assert names_an_argument("a and b must have the same shape", ck.info_nce)
    assert names_an_argument("labels: no anchor has a positive", ck.supcon)
    assert not names_an_argument("anchors needs at least 2 rows", ck.coconut_loss)
    assert not names_an_argument("expected m1 and m2 to have the same dtype", ck.info_nce)
