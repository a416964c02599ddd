"""Gaussian potentials ``exp(-t‖x_i - y_j‖²)`` on the similarity engine (uniformity terms)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit.engine.lse import pairwise_lse, safe_logsumexp
from contrastkit.engine.pairs import Pairs


def log_mean_gaussian_potential(
    x: Tensor, y: Tensor | None = None, *, t: float = 2.0, chunk_size: int | None = None
) -> Tensor:
    """``log mean_{i ≠ j} exp(-t ‖x_i - y_j‖²)`` on the similarity engine (``y=None``: ``y = x``).

    Why it runs on the engine: ``-t‖x_i - y_j‖² = (2t x_i) · y_j - t‖y_j‖² - t‖x_i‖²``. Appending
    a coordinate, anchors ``[2t x_i, 1]`` and candidates ``[y_j, -t‖y_j‖²]`` give the first two
    terms as one inner product (gradients reach ``‖y_j‖²`` through the extra coordinate); the row
    term ``-t‖x_i‖²`` is added to each row's log-sum-exp. Pairs ``i = j`` are excluded by ids.
    For ``y = x`` the mean over ``i ≠ j`` equals the mean over unordered pairs ``i < j``.
    Memory is ``O((n + m)·d)`` on the tiled path.
    """
    other = x if y is None else y
    n, m = x.shape[0], other.shape[0]
    anchors = torch.cat([2.0 * t * x, x.new_ones(n, 1)], dim=1)  # (n, d + 1)
    sq_other = other.pow(2).sum(-1, keepdim=True)  # (m, 1)
    candidates = torch.cat([other, -t * sq_other], dim=1)  # (m, d + 1)
    pairs = Pairs(
        row_ids=torch.arange(n, device=x.device), col_ids=torch.arange(m, device=x.device)
    )
    rows = pairwise_lse(anchors, candidates, pairs, chunk_size=chunk_size).rows
    assert rows is not None
    per_row = rows.lse - t * x.pow(2).sum(-1)  # (n,) log Σ_j exp(-t‖x_i - y_j‖²)
    return safe_logsumexp(per_row, dim=0) - math.log(n * m - min(n, m))
