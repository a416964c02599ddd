"""Small pieces every loss shares: preparing embeddings and applying a temperature."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import torch
from torch import Tensor

from contrastkit._checks import ValueChecks, row_magnitudes

_P = ParamSpec("_P")
_R = TypeVar("_R")


def full_precision(loss: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a loss in its inputs' precision (fp32 for fp16/bf16), never in autocast's lower one.

    Inside the loss, autocast is off on the device of its first tensor argument: under CPU bf16
    autocast a bf16 matmul of the logits costs ~1000× the error of the fp32 similarity engine at
    ``τ = 0.01``. Half-precision inputs are upcast by :func:`prepare`.
    """

    @functools.wraps(loss)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        device = _device_type(args)
        if not torch.is_autocast_enabled(device):  # nothing to switch off: skip the context
            return loss(*args, **kwargs)
        with torch.autocast(device, enabled=False):
            return loss(*args, **kwargs)

    return wrapper


def _device_type(args: tuple[object, ...]) -> str:
    for x in args:
        if isinstance(x, (list, tuple)) and x:
            x = x[0]
        if isinstance(x, Tensor):
            return x.device.type
    return "cpu"


def l2_normalize(x: Tensor) -> Tensor:
    """L2-normalise the last dimension, exactly for any finite non-zero row.

    ``torch.nn.functional.normalize`` divides by ``max(‖x‖, 1e-12)``: rows with a norm below
    ``1e-12`` come out shorter than 1, and rows above ``~1.8e19`` overflow ``‖x‖²`` in float32
    (the result is 0). Here each row is first divided by its largest magnitude (detached: the
    result does not depend on that scale, so values and gradients are exact), which puts its
    norm in ``[1, √d]``. An all-zero row stays zero with a bounded gradient (the losses reject
    it as a value error; see :meth:`contrastkit._checks.ValueChecks.nonzero_rows`).
    """
    return _normalize(x, row_magnitudes(x.detach(), keepdim=True))


def _normalize(x: Tensor, magnitudes: Tensor) -> Tensor:
    scale = torch.where(magnitudes > 0, magnitudes, 1.0)  # all-zero rows: divided by 1
    out: Tensor = _L2Normalize.apply(x, scale)  # type: ignore[no-untyped-call]
    return out


class _L2Normalize(torch.autograd.Function):
    """``z = (x / s) / ‖x / s‖`` with ``s = max|x|`` per row; saves only ``z`` and two factors.

    Backward is ``(g - z (z·g)) / ‖x / s‖ / s``, the exact gradient of the two divisions (``s``
    is a constant of the formula). Plain autograd would also keep ``x / s``: one more copy of the
    embeddings per input until backward.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor) -> Tensor:
        y = x / scale
        norm = torch.linalg.vector_norm(y, dim=-1, keepdim=True)
        norm = torch.where(norm > 0, norm, 1.0)
        z = y.div_(norm)
        ctx.save_for_backward(z, norm, scale)
        return z

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
        z, norm, scale = ctx.saved_tensors
        return (g - z * (z * g).sum(-1, keepdim=True)) / norm / scale, None


def prepare(x: Tensor, normalize: bool, checks: ValueChecks | None = None) -> Tensor:
    """Upcast half precision to fp32 and L2-normalise along the last dimension if asked.

    With ``checks`` (the call's :class:`~contrastkit._checks.ValueChecks`, where ``x`` was
    registered), the row magnitudes the normalisation computes also serve the value checks of
    ``x``: no second pass over it.
    """
    source = x
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if not normalize:
        return x
    magnitudes = row_magnitudes(x.detach(), keepdim=True)
    if checks is not None:
        checks.supply(source, magnitudes)
    return _normalize(x, magnitudes)


def scale_by_temperature(x: Tensor, temperature: float | Tensor) -> Tensor:
    """``x / τ`` for a float or a one-element tensor ``τ`` (gradient flows into a learnable ``τ``).

    The temperature is validated by :func:`contrastkit._checks.check_temperature`.
    """
    if isinstance(temperature, Tensor):
        return x / temperature.reshape(()).to(x.dtype)
    return x / temperature
