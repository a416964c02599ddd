"""The exact similarity engine under every softmax-family objective.

See :func:`pairwise_lse` for the contract and :mod:`contrastkit.engine.lse` for why the tiled
path is exact.
"""

from contrastkit.engine.lse import (
    DEFAULT_TILE,
    DENSE_MAX_PAIRS,
    LSEResult,
    SideStats,
    pairwise_lse,
    safe_logaddexp,
    safe_logsumexp,
)
from contrastkit.engine.pairs import PairRule, Pairs, TilePairs, apply_tile, shifted_cosine
from contrastkit.engine.potential import log_mean_gaussian_potential

__all__ = [
    "DEFAULT_TILE",
    "DENSE_MAX_PAIRS",
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
