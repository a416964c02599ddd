"""The exact similarity engine under every softmax-family objective.

See :func:`pairwise_lse` for the contract and :mod:`contrastkit.engine.lse` for why the tiled
path is exact.
"""

from contrastkit.engine.lse import (
    ACCELERATOR_TILE,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_TILE,
    DENSE_MAX_PAIRS,
    LSEResult,
    SideStats,
    default_tile,
    pairwise_lse,
    safe_logaddexp,
    safe_logsumexp,
)
from contrastkit.engine.pairs import (
    ExpCosine,
    PairRule,
    Pairs,
    TilePairs,
    apply_tile,
    shifted_cosine,
)
from contrastkit.engine.potential import log_mean_gaussian_potential

__all__ = [
    "ACCELERATOR_TILE",
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_TILE",
    "ExpCosine",
    "DENSE_MAX_PAIRS",
    "default_tile",
    "LSEResult",
    "PairRule",
    "Pairs",
    "SideStats",
    "TilePairs",
    "apply_tile",
    "log_mean_gaussian_potential",
    "pairwise_lse",
    "safe_logaddexp",
    "safe_logsumexp",
    "shifted_cosine",
]
