"""InfoNCE: one positive per anchor, in-batch (and optional extra) negatives.

References:
    - [0] van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018.
    - [1] Radford et al., "Learning Transferable Visual Models From Natural Language
      Supervision" (CLIP), 2021 — the symmetric form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_ids,
    check_reduction,
    check_same_dim,
    check_tensor,
    reduce,
    validate_pair,
)
from contrastkit.distributed import all_gather_with_grad, is_distributed
from contrastkit.engine import Pairs, pairwise_lse, safe_logaddexp, safe_logsumexp
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature


@full_precision
def info_nce(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    symmetric: bool = False,
    negatives: Tensor | None = None,
    positive_ids: Tensor | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
    gather_distributed: bool = False,
) -> Tensor:
    """InfoNCE loss of paired rows ``(a_i, b_i)`` against the other rows of ``b``.

    For anchor ``a_i`` with logits ``s_ij = <a_i, b_j> / τ``::

        ℓ_i = -log( exp(s_ii) / Σ_{j ∉ D(i)} exp(s_ij) + Σ_k exp(<a_i, n_k>/τ) )

    where ``D(i)`` are the in-batch duplicates of ``i`` (rows ``j ≠ i`` with the same
    ``positive_ids``) and ``n_k`` the extra negatives. The positive **is** in the denominator.
    With ``symmetric=True`` the loss is ``(ℓ^{a→b} + ℓ^{b→a}) / 2`` per pair (the CLIP loss; extra
    negatives then apply to the a→b direction only).

    Memory: runs on the similarity engine — ``O(B·d)`` on the tiled path, whatever ``B``.

    Args:
        a: ``(B, d)`` anchors (queries / first view / images).
        b: ``(B, d)`` positives, row-aligned with ``a`` (keys / second view / texts).
        temperature: ``τ`` > 0, float or scalar tensor (e.g. from
            :class:`contrastkit.LearnableTemperature`). Default 0.1 (info-nce-pytorch).
        symmetric: average the a→b and b→a directions.
        negatives: extra negatives, shared ``(K, d)`` or per anchor ``(B, K, d)`` (``K = 0``:
            none).
        positive_ids: ``(B,)`` ids; rows sharing an id with anchor ``i`` (other than ``b_i``) are
            not used as its negatives (duplicates / false negatives).
        normalize: L2-normalise all embeddings first (cosine similarity).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)`` per anchor, or per pair when
            symmetric).
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (a host sync); switch off once inputs are trusted.
        gather_distributed: under torch.distributed, contrast this rank's rows against the
            **global** batch: ``b`` (and ``a`` when symmetric) is gathered from every rank with
            gradient (:func:`contrastkit.distributed.all_gather_with_grad`), the loss covers the
            local anchors only. With DDP's gradient averaging the gradients then equal those of
            the single-process loss on the whole global batch (open_clip's
            ``local_loss=True, gather_with_grad=True``). Every rank must call the loss with the
            same batch size. A no-op without a multi-rank process group.

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``), fp32 for half inputs.

    Raises:
        ValueError: on mismatched shapes or dtypes, fewer than 2 rows without extra negatives,
            non-finite values, an all-zero row with ``normalize``, a temperature ≤ 0, a bad
            reduction, ``positive_ids`` shared by every row (no anchor would have a negative),
            a non-finite result, or ``gather_distributed`` together with ``negatives`` or
            ``positive_ids``.

    Peers: equals info-nce-pytorch ``InfoNCE`` without extra negatives. With ``negative_keys``
    that package contrasts against those keys *only*; here the other in-batch positives stay
    negatives too (pass ``positive_ids=torch.zeros(B)`` to drop them and match it). Equals
    open_clip ``ClipLoss`` with ``symmetric=True`` and ``temperature = 1 / logit_scale``;
    sentence-transformers' ``MultipleNegativesRankingLoss`` with ``scale = 1 / temperature``.

    Examples:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = info_nce(a, b, temperature=0.1)
        >>> loss.shape
        torch.Size([])
    """
    negatives = _nonempty_negatives(negatives, getattr(a, "shape", (0,))[0])
    checks = validate_pair(
        a,
        b,
        min_rows=1 if negatives is not None else 2,
        normalize=normalize,
        check_values=check_values,
        temperature=temperature,
        extra=[] if negatives is None else [("negatives", negatives)],
    )
    if negatives is not None:
        check_same_dim(a, negatives, ("a", "negatives"))
    check_reduction(reduction)
    if positive_ids is not None:
        check_ids(positive_ids, a.shape[0])
        if negatives is None:
            checks.require(
                (positive_ids != positive_ids[0]).any(),
                "positive_ids: every row shares one id, so no anchor has a negative",
            )
    if gather_distributed and (negatives is not None or positive_ids is not None):
        raise ValueError(
            "gather_distributed: not supported together with negatives or positive_ids"
        )

    za, zb = prepare(a, normalize, checks), prepare(b, normalize, checks)  # (B, d)
    queries = scale_by_temperature(za, temperature)  # (B, d), = a / τ
    positive = (queries * zb).sum(-1)  # (B,) s_ii
    if gather_distributed and is_distributed():
        return checks.verify(
            reduce(
                _global_batch_losses(
                    queries, za, zb, positive, temperature, symmetric, chunk_size, memory_budget
                ),
                reduction,
            )
        )
    # With ids, every same-id pair (the positive included) leaves the engine's sum and the
    # positive is added back: the denominator is then {positive} ∪ non-duplicates.
    pairs = Pairs(row_ids=positive_ids, col_ids=positive_ids) if positive_ids is not None else None
    stats = pairwise_lse(
        queries,
        zb,
        pairs,
        rows=True,
        columns=symmetric,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    )
    assert stats.rows is not None
    row_lse = stats.rows.lse  # (B,)
    if pairs is not None:
        row_lse = safe_logaddexp(row_lse, positive)
    if negatives is not None:
        zn = prepare(negatives, normalize, checks)
        if zn.ndim == 2:
            extra = pairwise_lse(
                queries, zn, chunk_size=chunk_size, memory_budget=memory_budget
            ).rows
            assert extra is not None
            extra_lse = extra.lse  # (B,)
        else:
            extra_lse = safe_logsumexp(torch.einsum("bd,bkd->bk", queries, zn), dim=1)
        row_lse = safe_logaddexp(row_lse, extra_lse)
    losses = row_lse - positive  # (B,)
    if symmetric:
        assert stats.columns is not None
        col_lse = stats.columns.lse
        if pairs is not None:
            col_lse = safe_logaddexp(col_lse, positive)
        losses = 0.5 * (losses + (col_lse - positive))
    return checks.verify(reduce(losses, reduction))


def _nonempty_negatives(negatives: Tensor | None, batch: int) -> Tensor | None:
    """Check extra negatives, shared ``(K, d)`` or per anchor ``(B, K, d)``; ``K = 0``: None."""
    if negatives is None:
        return None
    is_tensor = isinstance(negatives, Tensor)
    ndim = negatives.ndim if is_tensor else 0
    if ndim not in (2, 3) or (ndim == 3 and negatives.shape[0] != batch):
        got = tuple(negatives.shape) if is_tensor else type(negatives).__name__
        raise ValueError(
            f"negatives must be a tensor of shape (K, d) or ({batch}, K, d), got {got}"
        )
    check_tensor(negatives, "negatives", ndim=ndim, min_rows=0)
    return negatives if negatives.shape[-2] > 0 else None


def _global_batch_losses(
    queries: Tensor,
    za: Tensor,
    zb: Tensor,
    positive: Tensor,
    temperature: float | Tensor,
    symmetric: bool,
    chunk_size: int | None,
    memory_budget: int | None,
) -> Tensor:
    """Per-local-row losses against the rows of every rank (see ``gather_distributed``).

    The b→a direction of a symmetric loss is the column log-sum-exp of ``S = A Bᵀ / τ``; for
    this rank's columns it is the row log-sum-exp of ``(b_j / τ)`` against all of ``a``.
    """
    all_b = all_gather_with_grad(zb)  # (W·B, d)
    row = pairwise_lse(
        queries, all_b, rows=True, columns=False, chunk_size=chunk_size, memory_budget=memory_budget
    ).rows
    assert row is not None
    losses = row.lse - positive  # (B,)
    if symmetric:
        all_a = all_gather_with_grad(za)  # (W·B, d)
        back = scale_by_temperature(zb, temperature)
        col = pairwise_lse(
            back,
            all_a,
            rows=True,
            columns=False,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        ).rows
        assert col is not None
        losses = 0.5 * (losses + (col.lse - positive))
    return losses


class InfoNCELoss(LossModule):
    """Module wrapper of :func:`info_nce`; see it for the formula and conventions.

    Inputs: ``forward(a, b, negatives=None, positive_ids=None)`` with paired ``(B, d)`` rows.
    Use it for two views of the same sample (SimCLR-style, one direction), query → passage
    retrieval (with mined hard ``negatives``), or image–text pairs (``symmetric=True``; see also
    :class:`CLIPLoss` for a learnable temperature). :class:`NTXentLoss` also contrasts within
    each view; :class:`DCLLoss` removes the positive from the denominator.

    Args: the keyword arguments of :func:`info_nce` (``temperature`` may also be a
    :class:`contrastkit.LearnableTemperature`).

    Examples:
        >>> loss_fn = InfoNCELoss(temperature=0.1, symmetric=True)
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.1,
        symmetric: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        gather_distributed: bool = False,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            gather_distributed=gather_distributed,
            check_values=check_values,
        )
        self.symmetric = symmetric

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        negatives: Tensor | None = None,
        positive_ids: Tensor | None = None,
    ) -> Tensor:
        """Loss of ``(B, d)`` anchors ``a`` against paired positives ``b``."""
        return info_nce(
            a,
            b,
            negatives=negatives,
            positive_ids=positive_ids,
            temperature=self.tau(),
            symmetric=self.symmetric,
            **self.options(),
        )
