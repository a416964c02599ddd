"""Learnable temperature: log-parametrised and kept in its range by projection, as CLIP's."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastkit._checks import check_positive


class LearnableTemperature(nn.Module):
    """A temperature ``τ`` learned through ``log(1/τ)``, kept in ``[min, max]`` by projection.

    CLIP learns ``t' = log(1/τ)`` (open_clip's ``logit_scale``), initialised at ``log(1/0.07)``
    and bounded so that ``1/τ ≤ 100``. open_clip **projects** the parameter back into its range
    after each optimizer step (``logit_scale.clamp_(0, log 100)``); here the same projection is
    applied, in place and without gradient, at the start of each ``forward``, so no
    training-loop code is needed. The returned ``τ = exp(-log(1/τ))`` carries the true gradient
    at the bound too: when the loss asks for a larger ``τ`` again, the parameter moves back
    into the range (a clamp in the graph would give it a zero gradient there, forever).

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
        """Project the parameter into its range, then return ``τ`` (0-dim, with gradient)."""
        with torch.no_grad():
            self.log_inverse.clamp_(min=math.log(1.0 / self.max), max=math.log(1.0 / self.min))
        return torch.exp(-self.log_inverse)

    def extra_repr(self) -> str:
        """Show the range in the module's repr."""
        return f"min={self.min}, max={self.max}"
