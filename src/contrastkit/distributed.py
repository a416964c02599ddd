"""torch.distributed helpers: gathering embeddings across ranks with correct gradients.

The losses use them through an explicit option (``gather_distributed=True`` on
:func:`contrastkit.info_nce`, :func:`contrastkit.clip_loss`, :func:`contrastkit.siglip`,
:func:`contrastkit.supcon` and their modules); nothing here reads a global flag or takes a rank
or world size: both come from the initialised process group.

Why gradients need care: a plain ``torch.distributed.all_gather`` returns tensors without a
graph, so the embeddings of the other ranks act as constants and each rank's encoder receives
only the part of the gradient that flows through its own rows — training still runs, the loss
still falls, and the gradient is silently wrong. :func:`all_gather_with_grad` sums, in backward,
every rank's gradient with respect to the gathered tensor and hands each rank the slice of its
own rows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed(group: Any = None) -> bool:
    """True when torch.distributed is initialised with more than one rank in ``group``."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenation of every rank's rows. Backward: all-reduce (sum), own slice.

    Why the backward is right: the global objective is the sum of the ranks' losses
    ``Σ_r L_r``, and ``L_r`` depends on rank ``k``'s rows only through its copy of the gathered
    tensor (plus, for ``r = k``, directly, which autograd handles outside this function). So
    ``∂(Σ_r L_r)/∂x_k`` through the gather is the ``k``-th slice of ``Σ_r ∂L_r/∂gathered_r``:
    an all-reduce of the incoming gradients, then a slice.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: Any) -> Tensor:
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.rank, ctx.rows = group, rank, x.shape[0]
        return torch.cat(parts)  # (world · n, ...)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows], None


def all_gather_with_grad(x: Tensor, group: Any = None, check_shapes: bool = True) -> Tensor:
    """Concatenate ``x`` from every rank (rank order), keeping the gradient to every rank.

    Without an initialised multi-rank process group this returns ``x`` itself, so code written
    for several ranks runs unchanged on one.

    Args:
        x: ``(n, ...)`` this rank's rows; every rank must pass the same shape and dtype.
        group: the process group (default: the world).
        check_shapes: gather every rank's shape first and raise a clear error on a mismatch
            (one extra small collective).

    Returns:
        ``(world_size · n, ...)``; rows ``rank · n : (rank + 1) · n`` are this rank's ``x``.

    Raises:
        ValueError: if ``check_shapes`` and the ranks' shapes differ.
    """
    if not is_distributed(group):
        return x
    if check_shapes:
        shape = torch.tensor([x.ndim, *x.shape], dtype=torch.long, device=x.device)
        padded = torch.full((9,), -1, dtype=torch.long, device=x.device)
        padded[: min(9, shape.numel())] = shape[:9]
        shapes = [torch.empty_like(padded) for _ in range(dist.get_world_size(group))]
        dist.all_gather(shapes, padded, group=group)
        if any(not torch.equal(s, padded) for s in shapes):
            seen = [tuple(int(v) for v in s[1 : 1 + int(s[0])]) for s in shapes]
            raise ValueError(
                f"all_gather_with_grad: every rank must pass the same shape, got {seen} "
                "(rank order); pad or drop the last batch so that all ranks match"
            )
    out: Tensor = _AllGatherWithGrad.apply(x, group)  # type: ignore[no-untyped-call]
    return out
