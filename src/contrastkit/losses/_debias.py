"""Debiased (Chuang et al.) and hardness-weighted (Robinson et al.) negative terms.

Both replace the plain negative sum ``Σ_j exp(s_ij)`` of the InfoNCE denominator by an
estimate ``N_g`` of the sum over *true* negatives; :func:`info_nce` and :func:`nt_xent` expose
them as ``debias_prior`` (τ⁺) and ``hardness`` (β). Everything stays in the log domain.

References:
    - [0] Chuang et al., "Debiased Contrastive Learning", NeurIPS 2020 (chingyaoc/DCL).
    - [1] Robinson et al., "Contrastive Learning with Hard Negative Samples", ICLR 2021
      (joshr17/HCL).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit._checks import check_non_negative
from contrastkit.engine import PairRule, pairwise_lse


def check_debias_options(debias_prior: float, hardness: float) -> None:
    """Validate τ⁺ ∈ [0, 1) and β ≥ 0."""
    check_non_negative(debias_prior, "debias_prior")
    if debias_prior >= 1.0:
        raise ValueError(f"debias_prior (tau_plus) must be in [0, 1), got {debias_prior}")
    check_non_negative(hardness, "hardness")


def debiased_negative_lse(
    queries: Tensor,
    candidates: Tensor,
    negatives_only: PairRule,
    negative_lse: Tensor,
    positive: Tensor,
    num_negatives: Tensor,
    inverse_temperature: Tensor | float,
    *,
    debias_prior: float,
    hardness: float,
    chunk_size: int | None,
    memory_budget: int | None = None,
) -> Tensor:
    """``log N_g`` per anchor: the debiased / hardness-reweighted negative sum.

    With ``neg_j = exp(s_ij)``, ``pos = exp(s_i+)``, ``N`` negatives and ``t`` the temperature::

        R   = Σ_j neg_j                                     (β = 0)
        R   = Σ_j imp_j · neg_j / mean_j imp_j,  imp_j = exp(β s_ij)   (HCL)
        N_g = max( (R - τ⁺ · N · pos) / (1 - τ⁺),  N · e^{-1/t} )

    ``e^{-1/t}`` is the smallest possible ``neg_j`` for cosine similarities (the reference
    code's clamp, which keeps ``N_g > 0``). ``τ⁺ = β = 0`` gives back ``log R = negative_lse``.

    Args:
        queries: ``(n, d)`` anchors already divided by the temperature.
        candidates: ``(m, d)`` candidates.
        negatives_only: pair rule leaving only the negatives of each anchor counted.
        negative_lse: ``(n,)`` ``log Σ_j neg_j`` (already computed by the caller).
        positive: ``(n,)`` positive logits ``s_i+``.
        num_negatives: ``(n,)`` number of negatives ``N`` per anchor.
        inverse_temperature: ``1/t``.
        debias_prior: τ⁺, the class prior of false negatives.
        hardness: β, the concentration on hard negatives.
        chunk_size: tile size for the extra engine passes (HCL only).
        memory_budget: the engine's budget for those passes.

    Returns:
        ``(n,)`` ``log N_g``.
    """
    log_n = torch.log(num_negatives.to(negative_lse.dtype))
    log_r = negative_lse
    if hardness != 0.0:
        # Σ imp·neg = Σ exp((1+β) s);  mean imp = Σ exp(β s) / N.
        hard, importance = (
            pairwise_lse(
                queries * scale,
                candidates,
                negatives_only,
                chunk_size=chunk_size,
                memory_budget=memory_budget,
            )
            for scale in (1.0 + hardness, hardness)
        )
        assert hard.rows is not None and importance.rows is not None
        log_r = hard.rows.lse - (importance.rows.lse - log_n)
    floor = log_n - inverse_temperature  # log(N e^{-1/t})
    if debias_prior == 0.0:
        return torch.maximum(log_r, floor)
    # log(R - τ⁺ N pos) = log R + log(1 - ratio), ratio = τ⁺ N exp(s_pos - log R), valid while
    # ratio < 1. The ratio stays in the log domain: exp(s_pos - log R) overflows once the views
    # align at a small τ, and an inf in the branch torch.where discards still makes its gradient
    # NaN (0 · inf).
    log_ratio = math.log(debias_prior) + log_n + positive - log_r
    valid = log_ratio < 0.0
    safe_log_ratio = torch.where(valid, log_ratio, torch.full_like(log_ratio, -1.0))
    debiased = log_r + torch.log1p(-torch.exp(safe_log_ratio)) - math.log1p(-debias_prior)
    debiased = torch.where(valid, debiased, torch.full_like(debiased, -math.inf))
    return torch.maximum(debiased, floor)
