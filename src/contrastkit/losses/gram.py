"""GRAM: contrastive alignment of k modalities by the volume of their Gram matrix.

- [0] Cicchetti, Grassucci, Sigillo, Comminiello, "Gramian Multimodal Representation Learning and
  Alignment", ICLR 2025, https://arxiv.org/abs/2412.11959
- [1] Reference code: https://github.com/ispamm/GRAM (``utils/volume.py::volume_computation``,
  ``model/gram.py``)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_compatible,
    check_reduction,
    check_same_dim,
    check_temperature,
    check_tensor,
    reduce,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature

DEFAULT_EPS = 1e-8


def _check_eps(eps: float) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")


def _check_label_smoothing(label_smoothing: float) -> None:
    if (
        not isinstance(label_smoothing, (int, float))
        or isinstance(label_smoothing, bool)
        or not 0.0 <= label_smoothing < 1.0
    ):
        raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")


@full_precision
def gram_volume(
    anchor: Tensor,
    *others: Tensor,
    normalize: bool = True,
    eps: float = DEFAULT_EPS,
    check_values: bool = True,
) -> Tensor:
    r"""Volume of the parallelotope spanned by an anchor and ``k - 1`` other modalities.

    For anchor row ``i`` and sample ``j`` the ``k`` vectors ``(anchor_i, m1_j, ..., m{k-1}_j)``
    are stacked as the rows of ``A`` (``k x d``); the volume is

    .. math:: \mathrm{Vol}_{ij} = \sqrt{\max(|\det(A A^\top)|, \epsilon)}.

    Every non-anchor modality takes the *same* index ``j``: column ``j`` is sample ``j``'s whole
    tuple, so the off-diagonal entries are the volumes of the anchor with other samples' tuples.
    For ``k = 2`` and unit vectors, ``Vol = sqrt(1 - cos^2) = |sin angle|``.

    Numerics: the ``k x k`` determinants are computed in float64 (the reference uses
    ``torch.det(G.float())``; near-collinear tuples cancel catastrophically in float32), then
    cast back to the inputs' precision. The reference takes ``sqrt(|det|)``, whose gradient is
    infinite (``NaN`` at exactly 0) for perfectly aligned tuples. Here ``det`` is clamped below
    at ``eps`` before the square root: the value differs from the reference only where
    ``Vol < sqrt(eps)`` (``1e-4`` by default), where its gradient is 0, and the gradient is
    bounded by ``1 / (2 sqrt(eps))`` times that of ``det`` everywhere. ``eps=0`` reproduces the
    reference's values; where ``det = 0`` exactly the volume is 0 with a zero gradient (the
    reference's is NaN). The embedding dimension must be at least ``k``.

    Args:
        anchor: ``(B1, d)`` anchor-modality embeddings (text in the paper).
        *others: ``k - 1 >= 1`` tensors ``(B2, d)``, row ``j`` of each belonging to sample ``j``.
        normalize: L2-normalise every input first (the paper's volumes are of unit vectors).
        eps: lower clamp of ``|det|`` before the square root (see above).
        check_values: check inputs for NaN/inf (a host sync).

    Returns:
        ``(B1, B2)`` volumes, in float32 for half/float32 inputs and float64 for float64 ones.

    Raises:
        ValueError: no other modality, mismatched shapes or dimensions, an embedding
            dimension below ``k``, non-finite values, negative ``eps``.

    Example:
        >>> import torch
        >>> text, video, audio = torch.randn(3, 4, 8).unbind(0)
        >>> gram_volume(text, video, audio).shape
        torch.Size([4, 4])

    """
    checks = _validate(anchor, others, eps, normalize, check_values)
    return checks.verify(_volumes(anchor, others, normalize, eps))


def _validate(
    anchor: Tensor, others: tuple[Tensor, ...], eps: float, normalize: bool, check_values: bool
) -> ValueChecks:
    _check_eps(eps)
    if len(others) == 0:
        raise ValueError("others must contain at least one non-anchor modality, got none")
    check_tensor(anchor, "anchor")
    named = [("anchor", anchor)]
    for m, x in enumerate(others):
        name = f"others[{m}]"
        check_tensor(x, name)
        check_same_dim(anchor, x, ("anchor", name))
        if x.shape[0] != others[0].shape[0]:
            raise ValueError(
                f"others[{m}] must have the batch size of others[0] (one tuple per row), "
                f"got {x.shape[0]} and {others[0].shape[0]}"
            )
        named.append((name, x))
    if anchor.shape[-1] < len(named):
        raise ValueError(
            f"anchor: GRAM needs an embedding dimension >= the number of modalities "
            f"({len(named)}), got {anchor.shape[-1]}: in fewer dimensions every volume is 0"
        )
    check_compatible(named)
    checks = ValueChecks(check_values, "anchor and others")
    for name, x in named:
        checks.finite(name, x)
        if normalize:
            checks.nonzero_rows(name, x)
    return checks


def _volumes(anchor: Tensor, others: tuple[Tensor, ...], normalize: bool, eps: float) -> Tensor:
    """``(B1, B2)`` Gram volumes of validated inputs."""
    vecs = [prepare(v, normalize) for v in (anchor, *others)]
    a, rest = vecs[0], vecs[1:]
    b1, b2, k = a.shape[0], rest[0].shape[0], len(vecs)
    # Gram entries. anchor-anchor: (B1,); anchor-other: (B1, B2); other-other: (B2,)
    aa = (a * a).sum(-1)[:, None].expand(b1, b2)  # (B1, B2)
    a_o = [a @ o.T for o in rest]  # k-1 x (B1, B2)
    o_o = [[(o1 * o2).sum(-1)[None, :].expand(b1, b2) for o2 in rest] for o1 in rest]
    rows = [torch.stack([aa, *a_o], dim=-1)]  # first row, (B1, B2, k)
    for m in range(k - 1):
        rows.append(torch.stack([a_o[m], *o_o[m]], dim=-1))
    gram = torch.stack(rows, dim=-2)  # (B1, B2, k, k)
    # float64 determinants: near-collinear tuples cancel catastrophically in float32.
    det = torch.linalg.det(gram.double()).abs().clamp_min(eps).to(gram.dtype)  # (B1, B2)
    # √det with a zero (not NaN) gradient where det = 0 (collinear rows with eps = 0).
    root = det.clamp_min(torch.finfo(det.dtype).tiny).sqrt()
    return torch.where(det == 0, torch.zeros_like(root), root)  # NaN stays NaN (checked)


@full_precision
def gram_loss(
    anchor: Tensor,
    *others: Tensor,
    temperature: float | Tensor = 0.07,
    label_smoothing: float = 0.1,
    symmetric: bool = True,
    normalize: bool = True,
    eps: float = DEFAULT_EPS,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""GRAM contrastive loss: cross-entropy over negative Gram volumes.

    With ``V = gram_volume(anchor, *others)`` (``B x B``, small = aligned) the logits are
    ``-V / temperature`` and, with label-smoothed cross-entropy on the diagonal targets,

    .. math:: L = \tfrac12\left[\mathrm{CE}_{ls}(-V/\tau) + \mathrm{CE}_{ls}(-V^\top/\tau)\right]

    (anchor -> tuples and tuples -> anchor). The positive volume is in the denominator (InfoNCE
    style). ``reduction='none'`` returns per-sample losses (mean of the two directions);
    ``'mean'`` equals the reference's value.

    Defaults (reference code [1]): ``temperature=0.07`` (``contra_temp``, learnable there: pass
    a tensor or a ``LearnableTemperature`` output), ``label_smoothing=0.1``, symmetric. The
    reference's extra "DAM" data-anchor-matching (ITM) head is a model component, not part of
    this loss. Distributed: the reference all-gathers the non-anchor columns without gradient;
    gather before calling this function if you want the same.

    Peers: no PyPI package implements GRAM; tests check it against a float64 loop reference
    (volumes from a QR decomposition, an independent route) and the ``k = 2`` closed form.

    Similarity engine: not tiled. Each logit is the determinant of a pair-specific ``k x k``
    Gram matrix (a non-linear function of ``k - 1`` similarity matrices), not a single dot
    product, so the engine's ``a @ b.T`` tiles do not apply; memory is ``O(B^2 k^2)`` and time
    ``O(B^2 (k d + k^3))``.

    Args:
        anchor: ``(B, d)`` anchor-modality embeddings.
        *others: ``k - 1 >= 1`` tensors ``(B, d)``; row ``i`` of every input is sample ``i``.
        temperature: divides the negative volumes; float or tensor, > 0.
        label_smoothing: as in ``torch.nn.functional.cross_entropy``, in ``[0, 1)``.
        symmetric: average both directions; ``False`` keeps anchor -> tuples only.
        normalize: L2-normalise inputs first.
        eps: ``|det|`` clamp before the square root (see :func:`gram_volume`).
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per sample).
        check_values: check inputs for NaN/inf and the temperature (host sync).

    Returns:
        The loss (float32 for half/float32 inputs).

    Raises:
        ValueError: bad shapes, batch size 1, non-finite inputs, ``temperature <= 0``,
            ``label_smoothing`` outside ``[0, 1)``, unknown ``reduction``.

    Example:
        >>> import torch
        >>> text, video, audio = torch.randn(3, 8, 16).unbind(0)
        >>> loss = gram_loss(text, video, audio)
        >>> loss.shape
        torch.Size([])

    """
    check_reduction(reduction)
    _check_label_smoothing(label_smoothing)
    checks = _validate(anchor, others, eps, normalize, check_values)
    check_temperature(temperature, checks)
    volumes = _volumes(anchor, others, normalize, eps)  # (B, B)
    if volumes.shape[0] != volumes.shape[1]:
        raise ValueError(
            f"anchor and others must have the same batch size (row i of each is sample i), "
            f"got {volumes.shape[0]} and {volumes.shape[1]}"
        )
    if volumes.shape[0] < 2:
        raise ValueError("anchor needs at least 2 rows: with B = 1 there is no negative")
    logits = -scale_by_temperature(volumes, temperature)  # (B, B)
    targets = torch.arange(logits.shape[0], device=logits.device)
    losses = F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction="none")
    if symmetric:
        losses_t = F.cross_entropy(
            logits.T, targets, label_smoothing=label_smoothing, reduction="none"
        )
        losses = 0.5 * (losses + losses_t)  # (B,)
    return checks.verify(reduce(losses, reduction))


class GRAMLoss(LossModule):
    """Module form of :func:`gram_loss` (GRAM volume contrastive loss for k modalities).

    Args:
        temperature: divides the negative volumes (reference default 0.07).
        label_smoothing: cross-entropy label smoothing (reference default 0.1).
        symmetric: average both directions.
        normalize: L2-normalise inputs first.
        eps: ``|det|`` clamp before the square root.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Raises:
        ValueError: for bad hyper-parameters.

    Example:
        >>> import torch
        >>> criterion = GRAMLoss()
        >>> text, video, audio = torch.randn(3, 8, 16).unbind(0)
        >>> loss = criterion(text, video, audio)

    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module = 0.07,
        label_smoothing: float = 0.1,
        symmetric: bool = True,
        normalize: bool = True,
        eps: float = DEFAULT_EPS,
        reduction: Reduction = "mean",
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            check_values=check_values,
        )
        _check_label_smoothing(label_smoothing)
        _check_eps(eps)
        self.label_smoothing = label_smoothing
        self.symmetric = symmetric
        self.eps = eps

    def forward(self, anchor: Tensor, *others: Tensor) -> Tensor:
        """Loss of the anchor modality ``(B, d)`` against the others, each ``(B, d)``."""
        return gram_loss(
            anchor,
            *others,
            temperature=self.tau(),
            label_smoothing=self.label_smoothing,
            symmetric=self.symmetric,
            eps=self.eps,
            **self.options(),
        )
