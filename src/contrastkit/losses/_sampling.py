"""Mixup sampling shared by the mixing objectives (MixCo, Metrix, SupReMix)."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit._checks import check_positive


def sample_beta(
    concentration1: float,
    concentration0: float,
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``Beta(concentration1, concentration0)`` samples from an explicit generator.

    ``torch.distributions.Beta`` cannot take a generator; this draws the same distribution
    (as a 2-component Dirichlet, in float64) from ``generator`` so that runs are reproducible
    without touching the global RNG. Samples are drawn on the generator's device (CPU when
    ``generator`` is None) and moved to ``device``.

    Args:
        concentration1: ``a > 0`` (weight on the first component; the mean is ``a / (a + b)``).
        concentration0: ``b > 0``.
        shape: output shape.
        generator: RNG; None uses torch's global RNG.
        device: device of the result (default: the generator's device).
        dtype: dtype of the result.

    Returns:
        Samples in ``[0, 1]`` of shape ``shape``.

    Raises:
        ValueError: if a concentration is not a finite number > 0.

    Examples:
        >>> lam = sample_beta(2.0, 2.0, (4,), generator=torch.Generator().manual_seed(0))
    """
    check_positive(concentration1, "concentration1")
    check_positive(concentration0, "concentration0")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    conc = torch.tensor([concentration1, concentration0], dtype=torch.float64, device=draw_device)
    conc = conc.expand(*shape, 2).contiguous()
    sample = torch._sample_dirichlet(conc, generator=generator)[..., 0]
    return sample.to(device=device if device is not None else draw_device, dtype=dtype)
