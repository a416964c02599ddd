"""Small pieces every loss shares: preparing embeddings and applying a temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._checks import check_temperature


def prepare(x: Tensor, normalize: bool) -> Tensor:
    """Upcast half precision to fp32 and L2-normalise along the last dimension if asked."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return F.normalize(x, dim=-1) if normalize else x


def scale_by_temperature(x: Tensor, temperature: float | Tensor) -> Tensor:
    """``x / τ`` for a float or a scalar tensor ``τ`` (gradient flows into a learnable ``τ``)."""
    if isinstance(temperature, Tensor):
        if temperature.numel() != 1:
            raise ValueError(
                f"temperature must be a float or a scalar tensor, got shape "
                f"{tuple(temperature.shape)}"
            )
        return x / temperature.reshape(()).to(x.dtype)
    return x / temperature


def validate_temperature(temperature: float | Tensor) -> None:
    """Value check of a temperature (float always; tensor only on CPU, to avoid a sync)."""
    check_temperature(temperature)
