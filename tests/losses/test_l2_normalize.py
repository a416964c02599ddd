"""l2_normalize: exact values and gradients, and it keeps no copy of ``x / max|x|``."""

from __future__ import annotations

import torch

from contrastkit.losses._common import l2_normalize


def test_gradient_is_exact_in_float64():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l2_normalize, (x,))
    torch.testing.assert_close(l2_normalize(x), torch.nn.functional.normalize(x, dim=-1))


def test_tiny_huge_and_zero_rows():
    x = torch.tensor([[3e-30, 4e-30], [3e30, 4e30], [0.0, 0.0]], requires_grad=True)
    z = l2_normalize(x)
    torch.testing.assert_close(z[:2], torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
    assert (z[2] == 0).all()
    z.sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad[2], torch.ones(2))  # bounded, as before


def test_saves_only_its_output_and_row_factors():
    x = torch.randn(8, 16, requires_grad=True)
    z = l2_normalize(x)
    saved = z.grad_fn.saved_tensors
    assert sum(t.numel() for t in saved) == 8 * 16 + 2 * 8  # z, ‖y‖ and max|x| per row
