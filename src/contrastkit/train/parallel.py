"""Running the trainer under ``torchrun``: process group, sharding, synchronised BatchNorm.

``torchrun --nproc_per_node=N --no-python contrastkit train ...`` starts N processes; each finds
its rank in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins a process group
(NCCL on CUDA, gloo on CPU). The global batch ``train.batch_size`` is split evenly: rank ``r``
takes rows ``r·b … (r+1)·b`` of every global batch (``b = B / N``), so the data each step sees
is the same whatever N is. Why training then equals one process on the global batch:

* the model is wrapped in ``DistributedDataParallel``, which averages the ranks' gradients;
* every loss that supports it gathers the other ranks' embeddings *with* their gradient
  (``gather_distributed``), so each rank's local loss is its share of the global-batch loss;
* BatchNorm layers are synchronised (``train.sync_batchnorm``): their batch statistics are
  those of the global batch (``torch.nn.SyncBatchNorm`` on CUDA; :class:`SyncBatchNorm` below on
  CPU, where PyTorch has none);
* views are drawn for the global batch from the step's seed, then each rank takes its rows.

Rank 0 alone writes checkpoints, logs and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from contrastkit.train.config import ConfigError


@dataclass(frozen=True)
class Context:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes files)."""
        return self.rank == 0

    def shard(self, positions: Tensor) -> Tensor:
        """This rank's slice of a global batch's positions."""
        b = positions.shape[0] // self.world_size
        return positions[self.rank * b : (self.rank + 1) * b]

    def mean(self, values: Tensor) -> Tensor:
        """The mean of ``values`` over ranks (itself on one process)."""
        if self.world_size == 1:
            return values
        out = values.detach().clone()
        dist.all_reduce(out)
        return out / self.world_size

    def barrier(self) -> None:
        """Wait for every rank (no-op on one process)."""
        if self.world_size > 1:
            dist.barrier()


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a device; a device this machine lacks is a :class:`ConfigError`."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"train.device: unknown device {name!r} ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} requested, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} requested, but MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"train.device: expected cpu, cuda[:N] or mps, got {name!r}")
    return device


def init_from_env(device_name: str) -> Context:
    """Join the process group that ``torchrun`` set up, or run alone.

    Raises:
        ConfigError: an unavailable device.
    """
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(0, 1, device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device)


def shutdown(ctx: Context) -> None:
    """Leave the process group (no-op on one process)."""
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Forward: sum over ranks. Backward: sum of the ranks' gradients.

    The global objective is the sum of the ranks' losses, each of which sees the reduced value.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: Tensor) -> Tensor:
    """Differentiable sum over ranks."""
    out: Tensor = _AllReduceSum.apply(x)  # type: ignore[no-untyped-call]
    return out


class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any backend.

    In training mode the per-channel mean and (biased) variance are computed over every rank's
    rows with two differentiable all-reduces (sums, then squared deviations), so forward and
    backward equal those of ``BatchNorm`` on the concatenated batch; running statistics use the
    unbiased global variance, as ``BatchNorm`` does. Eval mode uses the running statistics. On one
    process it is plain ``BatchNorm``.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"expected (N, C, ...) input, got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x (N, C, ...)`` with global batch statistics."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        count = x.numel() // x.shape[1] * dist.get_world_size()  # every rank has as many rows
        mean = all_reduce_sum(x.sum(dims)) / count  # (C,)
        var = all_reduce_sum(((x - mean.view(shape)) ** 2).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by a synchronised one (in place)."""
    if device.type == "cuda":
        converted: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # type: ignore[no-untyped-call]
        return converted
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, SyncBatchNorm
        ):
            new = SyncBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child, device)
    return module
