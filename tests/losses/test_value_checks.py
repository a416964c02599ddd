"""ValueChecks: one fused test, messages in registration order, magnitudes shared with prepare."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit._checks import ValueChecks, row_magnitudes, validate_pair
from contrastkit.losses import clip_loss
from contrastkit.losses._common import l2_normalize, prepare


def test_row_magnitudes_is_max_abs_and_propagates_nan():
    x = torch.tensor([[1.0, -3.0, 2.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, -5.0]])
    r = row_magnitudes(x)
    assert r[:2].tolist() == [3.0, 0.0]
    assert math.isnan(r[2])
    torch.testing.assert_close(row_magnitudes(x[:2], keepdim=True), x[:2].abs().amax(-1, True))


@pytest.mark.parametrize("supplied", [True, False])
@pytest.mark.parametrize(
    ("bad", "message"),
    [("nan", "b contains NaN or inf values"), ("zero", "b has an all-zero row")],
)
def test_failure_names_the_argument_whether_or_not_prepare_supplied(supplied, bad, message):
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    b[2] = float("nan") if bad == "nan" else 0.0
    checks = validate_pair(a, b, normalize=True)
    if supplied:
        prepare(a, True, checks), prepare(b, True, checks)
    with pytest.raises(ValueError, match=message):
        checks.verify(torch.tensor(1.0))


def test_first_registered_failure_wins():
    checks = ValueChecks(True)
    checks.require(torch.tensor(False), "first")
    checks.embeddings("x", torch.zeros(2, 2), nonzero_rows=True)
    with pytest.raises(ValueError, match="first"):
        checks.run()
    checks = ValueChecks(True)
    checks.embeddings("x", torch.zeros(2, 2), nonzero_rows=True)
    checks.require(torch.tensor(False), "second")
    with pytest.raises(ValueError, match="x has an all-zero row"):
        checks.run()


def test_finite_only_inputs_accept_zero_rows_and_reject_inf():
    checks = ValueChecks(True)
    checks.embeddings("x", torch.zeros(2, 2), nonzero_rows=False)
    checks.finite("bias", torch.tensor(0.0))
    checks.run()  # zeros are finite
    checks = ValueChecks(True)
    checks.finite("bias", torch.tensor(float("-inf")))
    with pytest.raises(ValueError, match="bias contains NaN or inf values"):
        checks.run()


def test_non_finite_result_of_finite_inputs_is_named():
    checks = validate_pair(torch.randn(3, 2), torch.randn(3, 2), normalize=False)
    with pytest.raises(ValueError, match="a and b: the loss is not finite"):
        checks.verify(torch.tensor(float("inf")))


def test_prepare_with_checks_gives_the_same_values_and_gradients():
    a = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    with_checks = prepare(a, True, validate_pair(a, a.detach(), normalize=True))
    (g1,) = torch.autograd.grad(with_checks.pow(3).sum(), a)
    (g2,) = torch.autograd.grad(l2_normalize(a).pow(3).sum(), a)
    torch.testing.assert_close(with_checks, l2_normalize(a), rtol=0, atol=0)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_supplied_magnitudes_replace_the_pass_at_verify(monkeypatch):
    """With prepare's magnitudes, verify computes none: the checks cost no pass over inputs."""
    import contrastkit._checks as checks_module

    calls = []
    original = checks_module.row_magnitudes
    monkeypatch.setattr(
        checks_module, "row_magnitudes", lambda x, keepdim=False: calls.append(x) or original(x)
    )
    a, b = torch.randn(6, 3), torch.randn(6, 3)
    checks = validate_pair(a, b, normalize=True)
    checks.supply(a, row_magnitudes(a))
    checks.supply(b, row_magnitudes(b))
    checks.verify(clip_loss(a, b))
    assert calls == []  # ValueChecks computed nothing itself
    checks = validate_pair(a, b, normalize=True)
    checks.verify(torch.tensor(1.0))
    assert len(calls) == 2  # without supply: one pass per input
