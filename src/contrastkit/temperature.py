"""Learnable temperature: log-parametrised and clamped like CLIP's logit scale."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastkit._checks import check_positive


class LearnableTemperature(nn.Module):
    """A temperature ``τ`` learned through ``log(1/τ)``, clamped to ``[min, max]``.

    CLIP learns ``t' = log(1/τ)`` (open_clip's ``logit_scale``), initialised at ``log(1/0.07)``
    and clamped so that ``1/τ ≤ 100``. open_clip clamps the parameter in place after each optimizer
    step; here the clamp is applied in ``forward``, so no training-loop code is needed and the
    parameter's gradient is zero while the clamp is active — the same dynamics.

    Args:
        init: initial temperature (CLIP: 0.07; SigLIP: 0.1).
        min: smallest temperature (CLIP: 0.01, i.e. logit scale ≤ 100).
        max: largest temperature.

    Examples:
        >>> temperature = LearnableTemperature(init=0.07)
        >>> float(temperature())  # doctest: +ELLIPSIS
        0.07...
    """

    def __init__(self, init: float = 0.07, min: float = 0.01, max: float = 100.0) -> None:
        super().__init__()
        for name, value in (("init", init), ("min", min), ("max", max)):
            check_positive(value, name)
        if not min <= init <= max:
            raise ValueError(f"init must lie in [min, max] = [{min}, {max}], got {init}")
        self.min, self.max = float(min), float(max)
        self.log_inverse = nn.Parameter(torch.tensor(math.log(1.0 / init)))

    def forward(self) -> Tensor:
        """Return ``τ`` as a 0-dim tensor carrying the gradient."""
        clamped = self.log_inverse.clamp(min=math.log(1.0 / self.max), max=math.log(1.0 / self.min))
        return torch.exp(-clamped)

    def extra_repr(self) -> str:
        """Show the clamp range in the module's repr."""
        return f"min={self.min}, max={self.max}"
