"""NT-Xent: SimCLR's normalised temperature-scaled cross-entropy over 2B views.

Reference:
    - [0] Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
      (SimCLR), ICML 2020. google-research/simclr ``objective.py::add_contrastive_loss``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._checks import Reduction, check_ids, check_reduction, reduce, validate_pair
from contrastkit.engine import Pairs, pairwise_lse, safe_logaddexp
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature
from contrastkit.losses._debias import check_debias_options, debiased_negative_lse


@full_precision
def nt_xent(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    positive_ids: Tensor | None = None,
    debias_prior: float = 0.0,
    hardness: float = 0.0,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """NT-Xent over the ``2B`` views ``z = [a; b]``, optionally debiased / hardness-weighted.

    For each of the ``2B`` anchors ``z_i`` with partner ``z_{p(i)}`` (the other view of the same
    sample) and ``s_ik = <z_i, z_k> / τ``::

        ℓ_i = -log( exp(s_{i,p(i)}) / Σ_{k ≠ i, k ∉ D(i)} exp(s_ik) )

    The denominator runs over the ``2B - 1`` other views (self masked): the positive **is** in
    it. ``D(i)`` are declared duplicates (same ``positive_ids``, other sample), left out.

    Debiased and hard-negative variants (Chuang et al. 2020; Robinson et al. 2021) replace the
    negative sum by ``N_g = max((R - τ⁺·N·exp(s_pos)) / (1 - τ⁺), N·e^{-1/τ})`` with
    ``R = Σ_j exp(s_ij)`` (debiased) or its hardness-reweighted form
    ``R = Σ_j exp((1+β) s_ij) / mean_j exp(β s_ij)`` (HCL): ``ℓ_i = -log(pos / (pos + N_g))``.
    ``debias_prior = hardness = 0`` is plain NT-Xent. See :mod:`contrastkit.losses._debias`.

    Reduction: mean over the ``2B`` anchors, i.e. the *mean* of the two view directions
    (lightly, pytorch-metric-learning). SimCLR's TF code returns their *sum* (2× this value).
    ``reduction='none'`` returns ``(2B,)``: anchors of ``a`` first, then of ``b``.

    Defaults: ``τ = 0.5`` (SimCLR on CIFAR; lightly's default). SimCLR used 0.1 on ImageNet.

    Args:
        a: ``(B, d)`` first views.
        b: ``(B, d)`` second views, row-aligned with ``a``.
        temperature: ``τ`` > 0, float or scalar tensor.
        positive_ids: ``(B,)`` sample ids; views of other samples with the same id are not
            negatives.
        debias_prior: τ⁺ ∈ [0, 1), the prior probability that a negative shares the anchor's
            class (Chuang et al.: 0.1). 0 disables debiasing.
        hardness: β ≥ 0, concentration on hard negatives (Robinson et al.: 1.0). 0 disables.
        normalize: L2-normalise first (SimCLR's ``hidden_norm=True``).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (a host sync).

    Returns:
        Scalar loss, or ``(2B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on mismatched shapes or dtypes, B < 2, non-finite values, an all-zero row
            with ``normalize``, τ ≤ 0, a bad reduction, ``positive_ids`` shared by every row
            (no negative), or a non-finite result.

    Peers: equals lightly ``NTXentLoss(temperature)`` and pytorch-metric-learning
    ``NTXentLoss(temperature)`` on ``embeddings = [a; b]`` with labels ``[0..B-1, 0..B-1]``.

    Examples:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = nt_xent(a, b, temperature=0.5)
    """
    checks = validate_pair(
        a, b, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    check_debias_options(debias_prior, hardness)
    batch = a.shape[0]
    if positive_ids is not None:
        check_ids(positive_ids, batch)
        checks.require(
            (positive_ids != positive_ids[0]).any(),
            "positive_ids: every row shares one id, so no anchor has a negative",
        )

    z = torch.cat([prepare(a, normalize, checks), prepare(b, normalize, checks)])  # (2B, d)
    queries = scale_by_temperature(z, temperature)  # (2B, d)
    positive = (queries[:batch] * z[batch:]).sum(-1).repeat(2)  # (2B,) s_{i,p(i)}
    # Self, partner and duplicates share an id: all leave the sum, the positive is added back.
    ids = positive_ids if positive_ids is not None else torch.arange(batch, device=a.device)
    ids = ids.repeat(2)  # (2B,)
    negatives_only = Pairs(row_ids=ids, col_ids=ids)
    stats = pairwise_lse(
        queries, z, negatives_only, chunk_size=chunk_size, memory_budget=memory_budget
    )
    assert stats.rows is not None
    negative_lse = stats.rows.lse  # (2B,) log Σ_negatives exp(s_ik)
    if debias_prior or hardness:
        _, group, group_size = torch.unique(ids, return_inverse=True, return_counts=True)
        num_negatives = 2 * batch - group_size[group]  # views of other groups
        negative_lse = debiased_negative_lse(
            queries,
            z,
            negatives_only,
            negative_lse,
            positive,
            num_negatives,
            1.0 / temperature,
            debias_prior=debias_prior,
            hardness=hardness,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        )
    losses = safe_logaddexp(negative_lse, positive) - positive  # (2B,)
    return checks.verify(reduce(losses, reduction))


class NTXentLoss(LossModule):
    """Module wrapper of :func:`nt_xent`; see it for the formula and conventions.

    Inputs: ``forward(a, b, positive_ids=None)``, two augmented views ``(B, d)`` of the same
    samples. Use it for SimCLR-style self-supervised training. Compared with
    :class:`InfoNCELoss` it also contrasts views *within* ``a`` and within ``b`` (``2B - 2``
    negatives instead of ``B - 1``); :class:`DCLLoss` drops the positive from the denominator.

    ``debias_prior`` / ``hardness`` turn it into the debiased (DCL of Chuang et al.) and
    hard-negative (HCL) losses.

    Args: the keyword arguments of :func:`nt_xent`.

    Examples:
        >>> loss_fn = NTXentLoss(temperature=0.5)
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.5,
        debias_prior: float = 0.0,
        hardness: float = 0.0,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            check_values=check_values,
        )
        check_debias_options(debias_prior, hardness)
        self.debias_prior = debias_prior
        self.hardness = hardness

    def forward(self, a: Tensor, b: Tensor, positive_ids: Tensor | None = None) -> Tensor:
        """Loss of two ``(B, d)`` views."""
        return nt_xent(
            a,
            b,
            positive_ids=positive_ids,
            temperature=self.tau(),
            debias_prior=self.debias_prior,
            hardness=self.hardness,
            **self.options(),
        )
