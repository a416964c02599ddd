"""Differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022), used by GroCo.

A sorting network is a fixed sequence of layers of disjoint comparators ``(lo, hi)``. A hard
comparator writes ``min(x_lo, x_hi)`` to wire ``lo`` and ``max(x_lo, x_hi)`` to wire ``hi``. The
differentiable relaxation replaces the hard choice by a mixing weight

    alpha = f(steepness * (x_hi - x_lo)),        f a sigmoid-shaped CDF,
    x_lo' = alpha * x_lo + (1 - alpha) * x_hi,    x_hi' = (1 - alpha) * x_lo + alpha * x_hi,

and applies the same 2x2 doubly-stochastic mix to the columns ``lo, hi`` of a soft permutation
matrix ``P`` that starts at the identity. ``P[b, i, j]`` is the probability that input element
``i`` ends at (ascending) sorted position ``j``; ``x @ P`` is the relaxed sorted vector. In the
limit ``steepness -> inf`` ``P`` is the hard sorting permutation.

The construction (odd-even transposition and bitonic networks, the padding rule of the bitonic
network for sizes that are not powers of two, and the ``cauchy``/``logistic``/``reciprocal``/
``gaussian`` relaxations) follows ``diffsort`` (Felix-Petersen/diffsort, ``DiffSortNet``), whose
soft permutation matrices the tests reproduce. This implementation stores comparator indices
instead of dense selection matrices: ``O(n)`` work per layer instead of ``O(n^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import torch
from torch import Tensor, nn

NetworkType = Literal["odd_even", "bitonic"]
Distribution = Literal["cauchy", "logistic", "reciprocal", "gaussian"]

_NETWORKS = ("odd_even", "bitonic")


def _cauchy(v: Tensor) -> Tensor:
    return torch.atan(v) / math.pi + 0.5


def _logistic(v: Tensor) -> Tensor:
    return torch.sigmoid(v)


def _reciprocal(v: Tensor) -> Tensor:
    return 0.5 * (v / (2 + v.abs()) + 1)


def _gaussian(v: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(v / math.sqrt(2.0)))


_DISTRIBUTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "cauchy": _cauchy,
    "logistic": _logistic,
    "reciprocal": _reciprocal,
    "gaussian": _gaussian,
}


def odd_even_comparators(n: int) -> list[list[tuple[int, int]]]:
    """Odd-even transposition network on ``n`` wires: ``n`` layers of neighbour comparators.

    Layer ``l`` compares ``(i, i + 1)`` for ``i = l mod 2, l mod 2 + 2, ...``.
    """
    return [[(i, i + 1) for i in range(layer % 2, n - 1, 2)] for layer in range(n)]


def bitonic_comparators(n: int) -> list[list[tuple[int, int]]]:
    """Bitonic sorting network on ``n`` wires, each comparator as ``(min_wire, max_wire)``.

    The network is built for ``2**p >= n`` wires; the lowest ``2**p - n`` wires are virtual
    padding. A comparator between two real wires is kept; one between a real and a virtual wire
    leaves the real wire unchanged (as in ``diffsort``), so it is dropped.
    """
    p = max(1, math.ceil(math.log2(n))) if n > 1 else 0
    size = 2**p
    pad = size - n
    layers: list[list[tuple[int, int]]] = []
    for block in range(p):
        for step in range(block + 1):
            m = 2 ** (block - step)
            layer: list[tuple[int, int]] = []
            for start in range(0, size, 2 * m):
                for j in range(m):
                    a, b = start + j, start + j + m
                    if a < pad or b < pad:
                        continue
                    descending = (a // 2 ** (block + 1)) % 2 == 1
                    lo, hi = (b, a) if descending else (a, b)
                    layer.append((lo - pad, hi - pad))
            layers.append(layer)
    return layers


@lru_cache(maxsize=64)
def _layer_indices(network: str, n: int, device: torch.device) -> tuple[tuple[Tensor, Tensor], ...]:
    build = odd_even_comparators if network == "odd_even" else bitonic_comparators
    out = []
    for layer in build(n):
        if not layer:
            continue
        lo = torch.tensor([c[0] for c in layer], dtype=torch.long, device=device)
        hi = torch.tensor([c[1] for c in layer], dtype=torch.long, device=device)
        out.append((lo, hi))
    return tuple(out)


def check_sorter_args(network: str, distribution: str, steepness: float) -> None:
    """Validate the sorting-network hyper-parameters; raise ``ValueError`` naming the argument."""
    if network not in _NETWORKS:
        raise ValueError(f"network must be one of {_NETWORKS}, got {network!r}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"distribution must be one of {tuple(_DISTRIBUTIONS)}, got {distribution!r}"
        )
    if not isinstance(steepness, (int, float)) or isinstance(steepness, bool):
        raise ValueError(f"steepness must be a number, got {type(steepness).__name__}")
    if not math.isfinite(steepness) or steepness <= 0:
        raise ValueError(f"steepness must be a finite number > 0, got {steepness}")


def soft_sort(
    x: Tensor,
    *,
    network: NetworkType = "odd_even",
    steepness: float = 10.0,
    distribution: Distribution = "cauchy",
) -> tuple[Tensor, Tensor]:
    """Relax-sort each row of ``x`` ascending with a differentiable sorting network.

    Args:
        x: ``(N, n)`` values to sort along dimension 1.
        network: ``'odd_even'`` (``n`` layers) or ``'bitonic'`` (``O(log^2 n)`` layers).
        steepness: inverse temperature of the comparator relaxation (``diffsort`` default 10).
        distribution: CDF used for the comparator mixing weight, as in ``diffsort``.

    Returns:
        ``(x_sorted, P)``: the relaxed ascending sort ``(N, n)`` and the soft permutation matrix
        ``(N, n, n)`` with ``P[b, i, j]`` = probability that input ``i`` lands at position ``j``.

    Raises:
        ValueError: for a non-2-D or non-floating ``x`` or bad hyper-parameters.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.3, -1.0, 2.0]])
        >>> _, P = soft_sort(x, steepness=100.0)
        >>> P.argmax(dim=1)  # which input lands at each position
        tensor([[1, 0, 2]])

    """
    check_sorter_args(network, distribution, steepness)
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point (N, n) tensor, got {getattr(x, 'shape', x)}")
    f = _DISTRIBUTIONS[distribution]
    n = x.shape[1]
    # P: (N, n, n), columns are positions
    perm = torch.eye(n, dtype=x.dtype, device=x.device).expand(x.shape[0], n, n)
    for lo, hi in _layer_indices(network, n, x.device):
        x_lo, x_hi = x[:, lo], x[:, hi]  # (N, k)
        alpha = f(steepness * (x_hi - x_lo))  # (N, k), -> 1 when already in order
        x = x.index_copy(1, lo, alpha * x_lo + (1 - alpha) * x_hi).index_copy(
            1, hi, (1 - alpha) * x_lo + alpha * x_hi
        )
        p_lo, p_hi = perm[:, :, lo], perm[:, :, hi]  # (N, n, k)
        a = alpha.unsqueeze(1)  # (N, 1, k)
        perm = perm.index_copy(2, lo, a * p_lo + (1 - a) * p_hi).index_copy(
            2, hi, (1 - a) * p_lo + a * p_hi
        )
    return x, perm


class SoftSortingNetwork(nn.Module):
    """Module form of :func:`soft_sort` with fixed hyper-parameters.

    Unlike ``diffsort.DiffSortNet`` it holds no device-bound matrices: comparator indices are
    built (and cached) on the device of the input, so ``.to(device)`` needs no override.

    Args:
        network: ``'odd_even'`` or ``'bitonic'``.
        steepness: inverse temperature of the relaxation.
        distribution: comparator CDF.

    Raises:
        ValueError: for bad hyper-parameters.

    """

    def __init__(
        self,
        network: NetworkType = "odd_even",
        steepness: float = 10.0,
        distribution: Distribution = "cauchy",
    ) -> None:
        super().__init__()
        check_sorter_args(network, distribution, steepness)
        self.network: NetworkType = network
        self.steepness = float(steepness)
        self.distribution: Distribution = distribution

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(x_sorted, P)`` for ``x`` of shape ``(N, n)``."""
        return soft_sort(
            x, network=self.network, steepness=self.steepness, distribution=self.distribution
        )
