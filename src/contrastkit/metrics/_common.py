"""Input handling shared by the metrics: dtype promotion, normalisation, extra argument checks.

Generic checks live in :mod:`contrastkit._checks`; the few below are specific to evaluation code
(``k`` values, chunk sizes, integer class labels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._checks import check_embeddings


def prepare(
    x: Tensor, name: str, *, normalize: bool, check_values: bool, min_rows: int = 1
) -> Tensor:
    """Validate a ``(n, d)`` embedding tensor, detach it, promote fp16/bf16 to fp32, normalise.

    Args:
        x: embeddings ``(n, d)``.
        name: argument name used in error messages.
        normalize: L2-normalise the rows.
        check_values: check for NaN/inf (host sync).
        min_rows: fewest rows accepted.

    Returns:
        A detached float32 (or float64 when ``x`` is float64) tensor.

    Raises:
        ValueError: bad shape, dtype, too few rows, non-finite values, or a zero row to normalise.

    """
    check_embeddings(x, name, min_rows=min_rows, check_finite=check_values)
    x = x.detach()
    if x.dtype != torch.float64:
        x = x.float()
    if normalize:
        if check_values:
            norms = x.norm(dim=1)
            if bool((norms == 0).any()):
                bad = int(torch.nonzero(norms == 0)[0, 0])
                raise ValueError(
                    f"{name} has an all-zero row (row {bad}) that cannot be normalised"
                )
        x = F.normalize(x, dim=1)
    return x


def check_class_labels(labels: Tensor, n: int, name: str) -> Tensor:
    """Check integer class ids ``(n,)`` and return them as a detached int64 tensor.

    Raises:
        ValueError: not a tensor, wrong shape, floating dtype, or negative ids.

    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class ids, got dtype {labels.dtype}")
    labels = labels.detach().long()
    if n > 0 and int(labels.min()) < 0:
        raise ValueError(f"{name} must be non-negative class ids, got min {int(labels.min())}")
    return labels


def check_int(value: int, name: str, *, minimum: int = 1) -> None:
    """Check an integer hyper-parameter (``k``, ``chunk_size``) is ``>= minimum``.

    Raises:
        ValueError: not an int, or below ``minimum``.

    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
