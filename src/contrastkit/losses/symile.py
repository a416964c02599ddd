"""Symile: contrastive learning of k modalities with the multilinear inner product.

- [0] Saporta, Puli, Goldstein, Ranganath, "Contrasting with Symile: Simple Model-Agnostic
  Representation Learning for Unlimited Modalities", NeurIPS 2024, https://arxiv.org/abs/2411.01053
- [1] Reference code and PyPI package ``symile``: https://github.com/rajesh-lab/symile
  (``symile/loss.py::Symile``)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_compatible,
    check_pair,
    check_reduction,
    check_temperature,
    check_tensor,
    reduce,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare, scale_by_temperature

NegativeSampling = Literal["n", "n_squared"]
_SAMPLINGS = ("n", "n_squared")


def _check_negative_sampling(negative_sampling: str) -> None:
    if negative_sampling not in _SAMPLINGS:
        raise ValueError(
            f"negative_sampling must be one of {_SAMPLINGS}, got {negative_sampling!r}"
        )


def multilinear_inner_product(*modalities: Tensor) -> Tensor:
    r"""Row-wise multilinear inner product ``MIP(x, y, z, ...)_i = sum_d x_id y_id z_id ...``.

    Args:
        *modalities: tensors of the same shape ``(B, d)``.

    Returns:
        ``(B,)`` products.

    Example:
        >>> import torch
        >>> multilinear_inner_product(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 3))
        tensor([3., 3.])

    """
    prod = modalities[0]
    for x in modalities[1:]:
        prod = prod * x
    return prod.sum(-1)


def _logits_n(
    anchor: Tensor, others: list[Tensor], generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """O(B) negatives: rows of each non-anchor modality shuffled independently."""
    b = anchor.shape[0]
    shuffled = torch.ones_like(anchor)  # (B, d)
    for x in others:
        device = generator.device if generator is not None else x.device
        perm = torch.randperm(b, generator=generator, device=device).to(x.device)
        shuffled = shuffled * x[perm]
    logits = anchor @ shuffled.T  # (B, B): MIP(anchor_i, shuffled tuple j)
    positive = multilinear_inner_product(anchor, *others)  # (B,)
    eye = torch.eye(b, dtype=torch.bool, device=anchor.device)
    logits = torch.where(eye, positive.unsqueeze(0).expand(b, b), logits)  # positive on diagonal
    targets = torch.arange(b, device=anchor.device)
    return logits, targets


def _logits_n_squared(anchor: Tensor, others: list[Tensor]) -> tuple[Tensor, Tensor]:
    """All ``B^(k-1)`` combinations of non-anchor rows as candidates."""
    b, d = anchor.shape
    prod = anchor.unsqueeze(1)  # (B, 1, d)
    for x in others[:-1]:
        prod = (prod.unsqueeze(2) * x.view(1, 1, b, d)).reshape(b, -1, d)  # (B, B^m, d)
    logits = (prod @ others[-1].T).reshape(b, -1)  # (B, B^(k-1)), row-major tuple (j1..j_{k-1})
    # the positive tuple (i, ..., i) sits at flat index i * (1 + B + ... + B^(k-2))
    stride = sum(b**t for t in range(len(others)))
    targets = torch.arange(b, device=anchor.device) * stride
    return logits, targets


@full_precision
def symile_loss(
    *modalities: Tensor,
    temperature: float | Tensor,
    negative_sampling: NegativeSampling = "n",
    generator: torch.Generator | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""Symile loss: InfoNCE on multilinear inner products, each modality taken as anchor.

    For anchor modality ``a`` and the other ``k - 1`` modalities, the logit of anchor row ``i``
    against a candidate tuple ``(j_1, ..., j_{k-1})`` is
    ``MIP(a_i, m1_{j_1}, ..., m{k-1}_{j_{k-1}}) / temperature`` and the positive is the tuple
    ``(i, ..., i)``. With ``CE_a`` the batch of cross-entropies for anchor ``a``,

    .. math:: L = \frac{1}{k} \sum_{a=1}^{k} \mathrm{CE}_a .

    The positive is in the denominator. Candidates depend on ``negative_sampling``:

    - ``'n'`` (default, ``O(B)`` negatives per row): each non-anchor modality is row-shuffled
      independently by one ``torch.randperm(B)``; shuffled row ``j`` forms candidate ``j`` and
      the diagonal is replaced by the true positive MIP (a shuffled tuple can by chance be a
      false negative). Random numbers come from ``generator`` (default: torch's global RNG),
      drawn in the order anchor ``0..k-1``, then the non-anchor modalities in input order, one
      permutation each; this is the order the ``symile`` package uses, so a global seed
      reproduces it.
    - ``'n_squared'``: every combination of non-anchor rows (``B^(k-1)`` candidates per row;
      deterministic, memory ``O(B^k)``).

    ``reduction='none'`` gives one loss per sample (the mean of its ``k`` anchor directions);
    ``'mean'`` equals ``symile.Symile``'s value.

    Conventions versus ``symile`` (``Symile()(representations, logit_scale)``): symile
    multiplies by an already-exponentiated ``logit_scale``; here ``temperature = 1 /
    logit_scale``. symile expects inputs normalised by the model; ``normalize=True`` (default)
    L2-normalises them here (pass ``normalize=False`` for exact parity on unnormalised inputs).
    The candidate column order of ``'n_squared'`` differs from symile's (rolls) but a
    cross-entropy does not depend on it. Tests check values and gradients against ``symile``
    (``'n_squared'``, and ``'n'`` under a shared seed).

    Temperature: there is no single paper default (the reference learns ``log logit_scale``,
    initialised by ``--logit_scale_init``, ``-0.3`` in its XOR example, i.e. ``temperature ~
    1.35``), so it is a required argument; pass a tensor to learn it.

    Similarity engine: with ``'n'`` the logits are ``a @ p.T`` (``p`` the shuffled product) with
    the diagonal overwritten by the positive, an InfoNCE shape, but the engine does not yet take
    a separate positive logit, so this runs dense (``O(B^2)`` memory). ``'n_squared'`` is
    ``O(B^k)`` by definition and is not tiled either.

    Args:
        *modalities: ``k >= 2`` tensors ``(B, d)``; row ``i`` of each belongs to sample ``i``.
        temperature: divides the MIPs (``1 / logit_scale``); float or tensor, > 0.
        negative_sampling: ``'n'`` or ``'n_squared'``, see above.
        generator: RNG for the ``'n'`` shuffles (ignored for ``'n_squared'``).
        normalize: L2-normalise every modality first.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` (per sample).
        check_values: check inputs for NaN/inf (a host sync).

    Returns:
        The loss (float32 for half/float32 inputs).

    Raises:
        ValueError: fewer than 2 modalities, mismatched shapes, batch size 1, non-finite inputs,
            ``temperature <= 0``, unknown ``negative_sampling`` or ``reduction``.

    Example:
        >>> import torch
        >>> x, y, z = torch.randn(3, 8, 16).unbind(0)
        >>> g = torch.Generator().manual_seed(0)
        >>> loss = symile_loss(x, y, z, temperature=0.1, generator=g)
        >>> exact = symile_loss(x, y, z, temperature=0.1, negative_sampling="n_squared")

    """
    check_reduction(reduction)
    _check_negative_sampling(negative_sampling)
    if len(modalities) < 2:
        raise ValueError(f"modalities: Symile needs at least 2 modalities, got {len(modalities)}")
    named = [(f"modalities[{m}]", x) for m, x in enumerate(modalities)]
    for name, x in named:
        check_tensor(x, name, min_rows=2)
        check_pair(modalities[0], x, ("modalities[0]", name))
    check_compatible(named)
    checks = ValueChecks(check_values, "modalities")
    for name, x in named:
        checks.finite(name, x)
        if normalize:
            checks.nonzero_rows(name, x)
    check_temperature(temperature, checks)
    reps = [prepare(x, normalize) for x in modalities]
    per_anchor = []
    for a in range(len(reps)):
        others = [x for m, x in enumerate(reps) if m != a]
        if negative_sampling == "n":
            logits, targets = _logits_n(reps[a], others, generator)  # (B, B)
        else:
            logits, targets = _logits_n_squared(reps[a], others)  # (B, B^(k-1))
        logits = scale_by_temperature(logits, temperature)
        per_anchor.append(F.cross_entropy(logits, targets, reduction="none"))
    losses = torch.stack(per_anchor).mean(0)  # (B,)
    return checks.verify(reduce(losses, reduction))


class SymileLoss(LossModule):
    """Module form of :func:`symile_loss` (multilinear-inner-product InfoNCE for k modalities).

    Args:
        temperature: divides the MIPs (``symile``'s ``logit_scale`` is ``1 / temperature``).
        negative_sampling: ``'n'`` (``O(B)`` shuffled negatives) or ``'n_squared'``.
        normalize: L2-normalise every modality first.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Raises:
        ValueError: for bad hyper-parameters.

    Example:
        >>> import torch
        >>> criterion = SymileLoss(temperature=0.1)
        >>> x, y, z = torch.randn(3, 8, 16).unbind(0)
        >>> loss = criterion(x, y, z)

    """

    def __init__(
        self,
        *,
        temperature: float | Tensor | nn.Module,
        negative_sampling: NegativeSampling = "n",
        normalize: bool = True,
        reduction: Reduction = "mean",
        check_values: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            check_values=check_values,
        )
        _check_negative_sampling(negative_sampling)
        self.negative_sampling: NegativeSampling = negative_sampling

    def forward(self, *modalities: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Loss of ``k ≥ 2`` row-aligned ``(B, d)`` modalities."""
        return symile_loss(
            *modalities,
            temperature=self.tau(),
            negative_sampling=self.negative_sampling,
            generator=generator,
            **self.options(),
        )
