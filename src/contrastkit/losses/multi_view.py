"""MV-InfoNCE and MV-DHEL: contrastive objectives for more than two views, in the log domain.

Reference:
    - [0] Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning", 2025.
      ``pakoromilas/Multi-View-CL`` ``models/losses.py`` (``MVINFONCE``, ``MVDHEL``).

The reference exponentiates similarities directly (``torch.exp(z zᵀ / τ)``), which overflows
for small ``τ``; here every sum of exponentials is a log-sum-exp, the denominators run on the
similarity engine (``O(B·V·d)`` memory on the tiled path) and the positive terms are the
``V × V`` per-sample blocks (``O(B·V²)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._checks import Reduction, check_reduction, reduce, validate_views
from contrastkit.engine import Pairs, pairwise_lse, safe_logsumexp
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature


def _view_pair_logits(z: Tensor, temperature: float | Tensor) -> Tensor:
    """``(B, V, V)`` logits ``<z_i^v, z_i^w> / τ`` between the views of each sample."""
    return torch.einsum("bvd,bwd->bvw", scale_by_temperature(z, temperature), z)


@full_precision
def mv_info_nce(
    views: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """MV-InfoNCE over ``V ≥ 2`` views: one term per sample with all view pairs as positives.

    With ``s(x, y) = <x, y> / τ`` over the ``V·B`` rows ``z_k`` (views of all samples), per
    sample ``i`` (exactly the reference ``MVINFONCE``)::

        ℓ_i = -log( Σ_{v ≠ w} exp(s(z_i^v, z_i^w))  /  Σ_v Σ_{k ≠ (v,i)} exp(s(z_i^v, z_k)) )

    The numerator is the reference's ``2 · Σ_{v<w}`` (every ordered pair of distinct views of
    sample ``i``), computed as ``logsumexp`` over the off-diagonal of the ``V × V`` block. The
    denominator pools the NT-Xent denominators of all ``V`` views of sample ``i`` (each over
    the ``V·B - 1`` other rows, other views of ``i`` included): the positives **are** in the
    denominator. Note that the reference's per-sample pooling (one log-ratio per sample, not
    per view) means ``V = 2`` is *not* NT-Xent: it is
    ``-log(2 e^{s_ii}) + log(D_i^{(1)} + D_i^{(2)})``.

    Reduction: mean over samples; ``'none'`` returns ``(B,)``.

    Defaults: ``τ = 0.5`` (the reference's CIFAR configs).

    Args:
        views: ``(B, V, d)`` embeddings, ``V ≥ 2`` views of each of ``B ≥ 2`` samples.
        temperature: ``τ`` > 0, float or scalar tensor.
        normalize: L2-normalise first (the reference does).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (a host sync).

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on a shape other than ``(B ≥ 2, V ≥ 2, d)``, non-finite values, τ ≤ 0 or a
            bad reduction.

    Peers: no package implements it; tested against a float64 loop transcription of the
    reference formula.

    Examples:
        >>> views = torch.randn(8, 4, 16)  # 8 samples, 4 views
        >>> loss = mv_info_nce(views, temperature=0.5)
    """
    checks = validate_views(
        views, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    z = prepare(views, normalize, checks)  # (B, V, d)
    batch, num_views, dim = z.shape
    flat = z.transpose(0, 1).reshape(num_views * batch, dim)  # (VB, d), views-major
    ids = torch.arange(num_views * batch, device=z.device)  # self-pairs excluded
    stats = pairwise_lse(
        scale_by_temperature(flat, temperature),
        flat,
        Pairs(row_ids=ids, col_ids=ids),
        chunk_size=chunk_size,
        memory_budget=memory_budget,
    ).rows
    assert stats is not None
    denominator = safe_logsumexp(stats.lse.view(num_views, batch), 0)  # (B,) pooled over views
    pair_logits = _view_pair_logits(z, temperature)  # (B, V, V)
    off_diagonal = ~torch.eye(num_views, dtype=torch.bool, device=z.device)
    numerator = safe_logsumexp(pair_logits[:, off_diagonal], 1)  # (B,) log Σ_{v≠w}
    return checks.verify(reduce(denominator - numerator, reduction))


@full_precision
def mv_dhel(
    views: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """MV-DHEL over ``V ≥ 2`` views: decoupled alignment and same-view uniformity.

    With ``s(x, y) = <x, y> / τ``, per sample ``i`` (the reference ``MVDHEL``; product over
    views = sum of logs)::

        ℓ_i = -log Σ_{v < w} exp(s(z_i^v, z_i^w)) + Σ_v log Σ_{j ≠ i} exp(s(z_i^v, z_j^v))

    Negatives are only the *same-view* embeddings of the other samples; the positive is **not**
    in the denominator (decoupled, as DCL). The numerator has no factor 2 (unlike
    :func:`mv_info_nce`). For ``V = 2`` this is DHEL:
    ``-s(u_i, v_i) + log Σ_{j≠i} e^{s(u_i, u_j)} + log Σ_{j≠i} e^{s(v_i, v_j)}``.

    Reduction: mean over samples; ``'none'`` returns ``(B,)``.

    Defaults: ``τ = 0.5`` (the reference's CIFAR configs; its class default is 0.2).

    Args:
        views: ``(B, V, d)`` embeddings, ``V ≥ 2`` views of each of ``B ≥ 2`` samples.
        temperature: ``τ`` > 0, float or scalar tensor.
        normalize: L2-normalise first (the reference does).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (a host sync).

    Returns:
        Scalar loss, or ``(B,)`` with ``reduction='none'``.

    Raises:
        ValueError: on a shape other than ``(B ≥ 2, V ≥ 2, d)``, non-finite values, τ ≤ 0 or a
            bad reduction.

    Peers: no package implements it; tested against a float64 loop transcription of the
    reference formula.

    Examples:
        >>> loss = mv_dhel(torch.randn(8, 3, 16), temperature=0.5)
    """
    checks = validate_views(
        views, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    z = prepare(views, normalize, checks)  # (B, V, d)
    batch, num_views, _ = z.shape
    ids = torch.arange(batch, device=z.device)
    uniformity = z.new_zeros(batch)
    for v in range(num_views):  # same-view negatives only: one engine call per view
        z_v = z[:, v]  # (B, d)
        stats = pairwise_lse(
            scale_by_temperature(z_v, temperature),
            z_v,
            Pairs(row_ids=ids, col_ids=ids),
            chunk_size=chunk_size,
            memory_budget=memory_budget,
        ).rows
        assert stats is not None
        uniformity = uniformity + stats.lse  # (B,) Σ_v log Σ_{j≠i}
    pair_logits = _view_pair_logits(z, temperature)  # (B, V, V)
    upper = torch.triu(torch.ones(num_views, num_views, dtype=torch.bool, device=z.device), 1)
    alignment = safe_logsumexp(pair_logits[:, upper], 1)  # (B,) log Σ_{v<w}
    return checks.verify(reduce(uniformity - alignment, reduction))


class _MultiViewLoss(LossModule):
    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.5,
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


class MVInfoNCELoss(_MultiViewLoss):
    """Module wrapper of :func:`mv_info_nce`.

    Inputs: ``forward(views)`` with ``(B, V, d)`` embeddings of ``V ≥ 2`` augmented views per
    sample. Use it to train with more than two views at once (one loss over all view pairs
    instead of averaging pairwise NT-Xent losses). :class:`MVDHELLoss` decouples the positive
    from the denominator and uses same-view negatives only (the paper's better variant).

    Examples:
        >>> loss = MVInfoNCELoss(temperature=0.5)(torch.randn(8, 4, 16))
    """

    def forward(self, views: Tensor) -> Tensor:
        """Loss of ``(B, V, d)`` multi-view embeddings."""
        return mv_info_nce(views, temperature=self.tau(), **self.options())


class MVDHELLoss(_MultiViewLoss):
    """Module wrapper of :func:`mv_dhel`.

    Inputs: ``forward(views)`` with ``(B, V, d)`` embeddings of ``V ≥ 2`` views per sample.
    Use it for many-view self-supervised training; with ``V = 2`` it is DHEL (decoupled
    hyperspherical energy loss). Compared with :class:`MVInfoNCELoss` its cost grows as
    ``V·B²`` (same-view negatives) rather than ``(V·B)²``.

    Examples:
        >>> loss = MVDHELLoss(temperature=0.5)(torch.randn(8, 4, 16))
    """

    def forward(self, views: Tensor) -> Tensor:
        """Loss of ``(B, V, d)`` multi-view embeddings."""
        return mv_dhel(views, temperature=self.tau(), **self.options())
