"""Input validation shared by every objective.

Shape and dtype checks are free (no device work) and always run. Value checks (finiteness) need a
host sync, so every public function exposes ``check_finite=True`` that callers can switch off per
call once their pipeline is trusted.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")


def check_embeddings(
    x: Tensor, name: str, *, ndim: int = 2, min_rows: int = 1, check_finite: bool = True
) -> None:
    """Check an embedding tensor: floating dtype, ``ndim`` dimensions, enough rows, finite values.

    Raises:
        ValueError: naming ``name`` and what was expected.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != ndim:
        expected = {2: "(batch, dim)", 3: "(batch, views, dim)"}.get(ndim, f"{ndim} dims")
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} has an empty embedding dimension: shape {tuple(x.shape)}")
    if check_finite and not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf values")


def check_finite(*named: tuple[str, Tensor]) -> None:
    """Raise ``ValueError`` naming the first tensor that holds NaN/inf; one host sync in all.

    Raises:
        ValueError: ``"<name> contains NaN or inf values"``.
    """
    bounds = torch.stack([v for _, x in named for v in torch.aminmax(x.detach().float())])
    if bool(torch.isfinite(bounds).all()):
        return
    for name, x in named:
        if not all_finite(x):
            raise ValueError(f"{name} contains NaN or inf values")


def all_finite(x: Tensor) -> bool:
    """True when ``x`` has no NaN/inf (one fused min/max reduction, one host sync).

    ``aminmax`` propagates NaN, and every value lies between the two, so checking the pair is
    equivalent to ``isfinite(x).all()`` at a quarter of its cost on small batches.
    """
    low, high = torch.aminmax(x.detach())
    return bool(torch.isfinite(low) & torch.isfinite(high))


def check_pair(a: Tensor, b: Tensor, names: tuple[str, str] = ("a", "b")) -> None:
    """Check that two embedding batches are paired row by row: same batch size and dimension."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape (paired rows), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_same_dim(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    """Check that two embedding tensors share their last (embedding) dimension."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same embedding dimension, "
            f"got {a.shape[-1]} and {b.shape[-1]}"
        )


def check_positive(value: float, name: str) -> None:
    """Check a strictly positive finite hyper-parameter (temperature, sigma, ...)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")


def check_temperature(temperature: float | Tensor, name: str = "temperature") -> None:
    """Check a temperature given as a float or as a tensor (e.g. a learnable temperature).

    A tensor temperature is checked only when it is a Python-visible scalar on CPU, so that a
    learnable temperature on an accelerator never costs a host sync here.
    """
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1 and temperature.ndim != 1:
            raise ValueError(
                f"{name} must be a scalar or a (batch,) tensor, "
                f"got shape {tuple(temperature.shape)}"
            )
        if temperature.device.type == "cpu" and not bool((temperature > 0).all()):
            raise ValueError(f"{name} must be > 0, got {temperature.detach().flatten()[:4]}")
        return
    check_positive(temperature, name)


def check_chunk_size(chunk_size: int | None) -> None:
    """Check ``chunk_size``: None (automatic) or a positive integer tile size."""
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def check_reduction(reduction: str) -> None:
    """Check ``reduction`` is one of ``'mean'``, ``'sum'``, ``'none'``."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_labels(labels: Tensor, batch: int, name: str = "labels") -> None:
    """Check class labels: integer ``(batch,)`` or a 0/1 multi-label matrix ``(batch, L)``."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim not in (1, 2) or labels.shape[0] != batch:
        raise ValueError(
            f"{name} must have shape ({batch},) or ({batch}, num_labels), got {tuple(labels.shape)}"
        )
    if labels.ndim == 1 and labels.is_floating_point():
        raise ValueError(f"{name} must be integer class ids, got dtype {labels.dtype}")


def reduce(losses: Tensor, reduction: str) -> Tensor:
    """Apply a ``torch.nn.functional``-style reduction to per-anchor losses."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses
