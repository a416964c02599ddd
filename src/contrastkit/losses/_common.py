"""Small pieces every loss shares: preparing embeddings and applying a temperature."""

from __future__ import annotations

import torch
from torch import Tensor


def l2_normalize(x: Tensor) -> Tensor:
    """L2-normalise the last dimension, exactly for any finite non-zero row.

    ``torch.nn.functional.normalize`` divides by ``max(‖x‖, 1e-12)``: rows with a norm below
    ``1e-12`` come out shorter than 1, and rows above ``~1.8e19`` overflow ``‖x‖²`` in float32
    (the result is 0). Here each row is first divided by its largest magnitude (detached: the
    result does not depend on that scale, so values and gradients are exact), which puts its
    norm in ``[1, √d]``. An all-zero row stays zero with a bounded gradient (the losses reject
    it as a value error; see :meth:`contrastkit._checks.ValueChecks.nonzero_rows`).
    """
    scale = x.detach().abs().amax(-1, keepdim=True)
    y = x / torch.where(scale > 0, scale, torch.ones_like(scale))
    norm = torch.linalg.vector_norm(y, dim=-1, keepdim=True)
    return y / torch.where(norm > 0, norm, torch.ones_like(norm))


def prepare(x: Tensor, normalize: bool) -> Tensor:
    """Upcast half precision to fp32 and L2-normalise along the last dimension if asked."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return l2_normalize(x) if normalize else x


def scale_by_temperature(x: Tensor, temperature: float | Tensor) -> Tensor:
    """``x / τ`` for a float or a one-element tensor ``τ`` (gradient flows into a learnable ``τ``).

    The temperature is validated by :func:`contrastkit._checks.check_temperature`.
    """
    if isinstance(temperature, Tensor):
        return x / temperature.reshape(()).to(x.dtype)
    return x / temperature
