"""WhitenedCSE: shuffled group whitening as a positive generator, plus its multi-positive InfoNCE.

Reference:
    - [0] Zhuo et al., "WhitenedCSE: Whitening-based Contrastive Learning of Sentence
      Embeddings", ACL 2023. ``SupstarZh/WhitenedCSE`` ``whitenedcse/shuffled_group_whitening.py``
      and ``whitenedcse/models.py::cl_forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    check_reduction,
    reduce,
    validate_embeddings,
    validate_views,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision
from contrastkit.losses.info_nce import info_nce


def _check_groups(num_features: int, num_groups: int) -> None:
    for value, name in ((num_features, "num_features"), (num_groups, "num_groups")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if num_features % num_groups:
        raise ValueError(
            f"num_groups must divide the number of features ({num_features}), got {num_groups}"
        )


def _check_eps(eps: float) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")


def group_whiten(
    x: Tensor,
    *,
    num_groups: int,
    permutation: Tensor | None = None,
    eps: float = 1e-5,
    whitening_gradient: bool = False,
    check_values: bool = True,
) -> Tensor:
    """Group (ZCA) whitening of a batch, optionally after a channel permutation.

    Channels are permuted by ``permutation`` (if given), split into ``G`` contiguous groups of
    ``c = D / G`` channels, and each group is centred over the batch and multiplied by
    ``W_g = U (Λ + eps)^{-1/2} Uᵀ`` from the eigendecomposition ``Σ_g = U Λ Uᵀ`` of its biased
    batch covariance ``Σ_g = X_gᵀ X_g / N`` (computed in float64); the permutation is then
    undone. With ``eps = 0`` and ``N > c`` every group of the output has identity covariance.

    Gradient: as in the reference, ``W_g`` is a constant (``whitening_gradient=False``: the
    reference rebuilds the covariance as a new leaf tensor, cutting the graph); the gradient
    flows through the centring and the product. ``whitening_gradient=True`` also
    differentiates the eigendecomposition (unstable when eigenvalues are nearly equal).

    Args:
        x: ``(N, D)`` features.
        num_groups: ``G``, must divide ``D``.
        permutation: ``(D,)`` channel permutation applied before grouping (None: identity).
        eps: added to the eigenvalues (``≥ 0``); the reference uses 0.
        whitening_gradient: differentiate through ``W_g``.
        check_values: check for NaN/inf (a host sync).

    Returns:
        ``(N, D)`` whitened features, same dtype as ``x`` (half inputs are computed in fp32).

    Raises:
        ValueError: on a bad shape, ``N < 2``, non-finite values, ``num_groups`` not dividing
            ``D``, a bad permutation or ``eps < 0``.

    Examples:
        >>> x = torch.randn(64, 16)
        >>> white = group_whiten(x, num_groups=4, eps=0.0)
        >>> cov = white[:, :4].T @ white[:, :4] / 64
        >>> bool(torch.allclose(cov, torch.eye(4), atol=1e-4))
        True
    """
    validate_embeddings(x, "x", min_rows=2, check_values=check_values).run()
    num_rows, num_features = x.shape
    _check_groups(num_features, num_groups)
    _check_eps(eps)
    if permutation is not None and (
        permutation.shape != (num_features,) or permutation.is_floating_point()
    ):
        raise ValueError(
            f"permutation must be an integer tensor of shape ({num_features},), "
            f"got {permutation.dtype} {tuple(permutation.shape)}"
        )
    dtype = x.dtype
    work = x.float() if dtype in (torch.float16, torch.bfloat16) else x
    if permutation is not None:
        work = work[:, permutation]
    size = num_features // num_groups
    grouped = work.view(num_rows, num_groups, size)  # (N, G, c)
    centred = (grouped - grouped.mean(0, keepdim=True)).transpose(0, 1)  # (G, N, c)
    source = centred if whitening_gradient else centred.detach()
    cov = source.double().transpose(1, 2) @ source.double() / num_rows  # (G, c, c) fp64
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # (G, c), (G, c, c)
    scale = (eigenvalues.clamp_min(0.0) + eps).rsqrt()  # (G, c)
    transform = (eigenvectors * scale[:, None, :]) @ eigenvectors.transpose(1, 2)  # (G, c, c)
    white = centred @ transform.to(centred.dtype)  # (G, N, c)
    out = white.transpose(0, 1).reshape(num_rows, num_features)  # (N, D), permuted channels
    if permutation is not None:
        out = out[:, torch.argsort(permutation)]
    result: Tensor = out.to(dtype)
    return result


class ShuffledGroupWhitening(nn.Module):
    """WhitenedCSE's shuffled group whitening (SGW): whitened positives from channel shuffles.

    Each output is :func:`group_whiten` of the batch after its own random channel permutation
    (undone afterwards): different shuffles group the channels differently, so each gives a
    differently whitened view of the same features.

    * ``x`` of shape ``(B, D)`` → ``(B, num_pos, D)``: ``num_pos`` whitened copies of the same
      batch, each with an independent shuffle;
    * ``x`` of shape ``(B, V, D)`` → ``(B, V, D)``: each view (e.g. one dropout pass each) is
      whitened over the batch with its own shuffle — the reference's layout, which splits the
      batch into ``num_pos`` parts and whitens each with its own shuffle.

    Departures from the reference: no train/eval difference (the reference also shuffles
    randomly in eval; WhitenedCSE only uses SGW in training); the eigendecomposition is in
    float64 with ``eps`` added to the eigenvalues (the reference: float32, no ``eps``); the
    reference's unused running buffers are not kept. The whitening matrix is a constant for
    autograd, as in the reference (see :func:`group_whiten`).

    Args:
        num_features: ``D``.
        num_groups: ``G`` groups of ``D / G`` channels (reference: 128 for ``D = 768``). Each
            group needs a batch larger than its ``D / G`` channels to be full rank.
        num_pos: number of whitened copies of a ``(B, D)`` input (reference: 3).
        shuffle: permute channels randomly before grouping (False: plain group whitening).
        eps: added to the covariance eigenvalues.
        whitening_gradient: differentiate through the whitening matrix.

    Examples:
        >>> sgw = ShuffledGroupWhitening(num_features=32, num_groups=4, num_pos=3)
        >>> sgw(torch.randn(64, 32)).shape
        torch.Size([64, 3, 32])
    """

    def __init__(
        self,
        num_features: int,
        *,
        num_groups: int = 128,
        num_pos: int = 3,
        shuffle: bool = True,
        eps: float = 1e-5,
        whitening_gradient: bool = False,
    ) -> None:
        super().__init__()
        _check_groups(num_features, num_groups)
        if isinstance(num_pos, bool) or not isinstance(num_pos, int) or num_pos < 1:
            raise ValueError(f"num_pos must be a positive integer, got {num_pos!r}")
        _check_eps(eps)
        self.num_features = num_features
        self.num_groups = num_groups
        self.num_pos = num_pos
        self.shuffle = shuffle
        self.eps = eps
        self.whitening_gradient = whitening_gradient

    def forward(self, x: Tensor) -> Tensor:
        """Whitened positives: ``(B, D) → (B, num_pos, D)`` or ``(B, V, D) → (B, V, D)``."""
        if x.ndim == 2:
            views = [x] * self.num_pos  # (B, D) each
        elif x.ndim == 3:
            views = list(x.unbind(1))  # V × (B, D)
        else:
            raise ValueError(
                f"x must have shape (batch, {self.num_features}) or "
                f"(batch, views, {self.num_features}), got {tuple(x.shape)}"
            )
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"x must have {self.num_features} features, got shape {tuple(x.shape)}"
            )
        out = []
        for view in views:
            permutation = (
                torch.randperm(self.num_features, device=x.device) if self.shuffle else None
            )
            out.append(
                group_whiten(
                    view,
                    num_groups=self.num_groups,
                    permutation=permutation,
                    eps=self.eps,
                    whitening_gradient=self.whitening_gradient,
                )
            )
        return torch.stack(out, dim=1)  # (B, P, D)


@full_precision
def whitened_cse_loss(
    views: Tensor,
    *,
    temperature: float | Tensor = 0.05,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    check_values: bool = True,
) -> Tensor:
    """WhitenedCSE's multi-positive InfoNCE: view 0 against each other view, summed.

    With ``z^p = views[:, p]`` and ``s_ij^p = cos(z_i^0, z_j^p) / τ``::

        ℓ_i = Σ_{p=1}^{P-1} -log( exp(s_ii^p) / Σ_j exp(s_ij^p) )

    i.e. ``CE(cos(z1, z2)/τ) + CE(cos(z1, z3)/τ)`` for the reference's ``P = 3``: one
    :func:`contrastkit.info_nce` (a→b direction, in-batch negatives, positive in the
    denominator) per extra view, **summed** over views and averaged over the batch.
    ``reduction='none'`` returns ``(B,)`` (per anchor, summed over views).

    Defaults: ``τ = 0.05`` (WhitenedCSE / SimCSE).

    Args:
        views: ``(B, P, d)``, ``P ≥ 2`` (e.g. the output of :class:`ShuffledGroupWhitening`
            after the projection head).
        temperature: ``τ`` > 0.
        normalize: cosine similarity (L2-normalise first).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: None picks dense or tiled automatically; an int forces tiles of that size.
        check_values: check for NaN/inf (a host sync).

    Returns:
        The loss (scalar, or ``(B,)`` with ``reduction='none'``).

    Raises:
        ValueError: on a shape other than ``(B ≥ 2, P ≥ 2, d)``, non-finite values, τ ≤ 0 or a
            bad reduction.

    Peers: the reference's loss is ``nn.CrossEntropyLoss`` on cosine logits (SimCSE's); each
    term equals :func:`contrastkit.info_nce`, which matches info-nce-pytorch.

    Examples:
        >>> loss = whitened_cse_loss(torch.randn(8, 3, 16))
    """
    checks = validate_views(
        views, normalize=normalize, check_values=check_values, temperature=temperature
    )
    check_reduction(reduction)
    anchor = views[:, 0]  # (B, d)
    losses = [
        info_nce(
            anchor,
            views[:, p],
            temperature=temperature,
            normalize=normalize,
            reduction="none",
            chunk_size=chunk_size,
            check_values=False,
        )
        for p in range(1, views.shape[1])
    ]
    return checks.verify(reduce(torch.stack(losses).sum(0), reduction))  # (B,) Σ positives


class WhitenedCSELoss(LossModule):
    """Module wrapper of :func:`whitened_cse_loss`.

    Inputs: ``forward(views)`` with ``(B, P, d)`` embeddings, view 0 the anchor. Use it with
    :class:`ShuffledGroupWhitening` for sentence embeddings (SimCSE-style dropout views whose
    features are whitened by different channel shuffles): ``views = head(sgw(features))``.
    Compared with :class:`InfoNCELoss` it sums one InfoNCE per extra positive view.

    Examples:
        >>> sgw = ShuffledGroupWhitening(num_features=32, num_groups=4, num_pos=3)
        >>> loss = WhitenedCSELoss(temperature=0.05)(sgw(torch.randn(64, 32)))
    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.05,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            check_values=check_values,
        )

    def forward(self, views: Tensor) -> Tensor:
        """Loss of ``(B, P, d)`` views: view 0 is the anchor, the others its positives."""
        return whitened_cse_loss(views, temperature=self.tau(), **self.options())
