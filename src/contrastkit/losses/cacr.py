"""CACR: Contrastive Attraction and Contrastive Repulsion (Zheng et al., NeurIPS 2021).

Two doubly-contrastive transport terms on squared Euclidean costs between normalised embeddings:

* contrastive attraction (CA) pulls each view towards the *other* views of the same sample,
  weighting distant positives more;
* contrastive repulsion (CR) pushes each view away from the other samples' views, weighting
  close negatives more.

The weights are softmaxes of the costs. The small-scale reference code lets gradients flow
through them (``detach_weights=False``, the default); the ImageNet/MoCo code computes them under
``torch.no_grad()`` (``detach_weights=True``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit._checks import Reduction, check_positive, check_reduction, reduce, validate_views
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare


def _sq_dists(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean distances ``‖x_i − y_j‖²`` over the last dim, via differences (exact)."""
    return (x.unsqueeze(-2) - y.unsqueeze(-3)).pow(2).sum(dim=-1)


def _sq_dists_gram(x: Tensor, y: Tensor) -> Tensor:
    """``(n, m)`` squared distances ``‖x‖² + ‖y‖² − 2xᵀy``, in ``O(n·m)`` memory."""
    return (x.pow(2).sum(-1)[:, None] + y.pow(2).sum(-1)[None, :] - 2.0 * (x @ y.t())).clamp_min(
        0.0
    )


def _check_prior(debias_prior: float) -> None:
    ok = isinstance(debias_prior, (int, float)) and not isinstance(debias_prior, bool)
    if not ok or not math.isfinite(debias_prior) or not 0.0 <= debias_prior < 1.0:
        raise ValueError(f"debias_prior must be a number in [0, 1), got {debias_prior!r}")


@full_precision
def cacr_loss(
    views: Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    pos_temperature: float = 1.0,
    neg_temperature: float = 1.0,
    debias_prior: float = 0.0,
    detach_weights: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
    check_values: bool = True,
) -> Tensor:
    r"""CACR loss for ``V >= 2`` views of ``B`` samples.

    With ``D^{xy}_{ij} = \lVert z_{x,i} - z_{y,j} \rVert^2`` (views ``x, y``, samples ``i, j``):

    .. math::
        \text{CA}_i = \frac{1}{V} \sum_{x} \sum_{p \ne x} \pi^+_{x,p,i}\, \alpha D^{xp}_{ii},
        \qquad \pi^+_{x,\cdot,i} = \operatorname{softmax}_{p \ne x}\big(D^{xp}_{ii} / T^+\big)

        \text{CR}_i = \frac{2}{V(V-1)} \sum_{x<y} \sum_{j \ne i}
            \pi^-_{xy,ij}\, (-\beta D^{xy}_{ij}),
        \qquad \pi^-_{xy,i\cdot} = \operatorname{softmax}_{j \ne i}\big(-D^{xy}_{ij} / T^-\big)

    and ``ℓ_i = CA_i + CR_i``. Distant positives and close negatives get the larger weights. CR
    runs over unordered view pairs ``x < y`` with rows from view ``x`` and the other samples of
    view ``y`` as negatives (as in the reference code; same-view negatives are not used). There is
    no softmax denominator: the loss is a weighted cost. With ``debias_prior = τ⁺_prior > 0``,
    ``CR`` becomes ``(−τ⁺_prior·D^{xy}_{ii} + Σ_j π⁻ c⁻) / (1 − τ⁺_prior)``.

    Conventions: ``pos_temperature``/``neg_temperature`` divide the costs inside the softmaxes;
    the reference code's ``tau_pos``/``tau_neg`` *multiply* them, so ``tau = 1 / temperature``
    (README runs: ``tau_neg = 0.9`` on CIFAR-10 → ``neg_temperature = 1/0.9``; 2.0 on
    CIFAR-100/STL-10 → 0.5). Defaults ``alpha = beta = 1``, ``tau_pos = tau_neg = 1``
    (``JegZheng/CACR-SSL`` ``small_scale_experiments``, which uses ``V = 5`` views).

    ``detach_weights=True`` computes ``π⁺, π⁻`` without gradient, as ``cacr_euclideanloss`` /
    ``cacr_rbfloss`` of the ImageNet MoCo code do. That code also differs in structure (online
    queries vs a momentum key, cost ``1 − cos = D/2``, CA weights multiplying CR, a sum over the
    batch): only its stop-gradient is reproduced here.

    Memory: one dense ``B × B`` cost matrix per view pair (kept for backward), ``O(V²·B²)``
    in total plus ``O(V²·B·d)`` for the attraction costs.

    Args:
        views: ``(B, V, d)`` embeddings, ``B >= 2``, ``V >= 2``.
        alpha: Attraction cost weight ``α > 0``.
        beta: Repulsion cost weight ``β > 0``.
        pos_temperature: ``T⁺ > 0`` of the positive weights.
        neg_temperature: ``T⁻ > 0`` of the negative weights.
        debias_prior: Class prior ``τ⁺_prior`` in ``[0, 1)`` of the debiased CR; 0 disables it.
        detach_weights: Stop gradients through ``π⁺, π⁻`` (ImageNet/MoCo mode).
        normalize: L2-normalise the embeddings first (the reference does).
        reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (``(B,)`` per sample).
        check_values: Check for NaN/inf (one host sync).

    Returns:
        The loss (fp32 for fp16/bf16 inputs).

    Raises:
        ValueError: On bad shapes/dtypes, ``B < 2``, ``V < 2``, non-finite values or bad
            hyper-parameters (naming the argument).

    Example:
        >>> views = torch.randn(16, 4, 32)  # 16 samples, 4 augmented views each
        >>> loss = cacr_loss(views)
    """
    checks = validate_views(views, normalize=normalize, check_values=check_values)
    _check_options(alpha, beta, pos_temperature, neg_temperature, debias_prior)
    check_reduction(reduction)
    z = prepare(views, normalize)  # (B, V, d)
    b, v, _ = z.shape

    # Contrastive attraction: costs between the views of each sample.
    d_pos = _sq_dists(z, z)  # (B, V, V)
    self_view = torch.eye(v, dtype=torch.bool, device=z.device)
    logits_pos = (d_pos.detach() if detach_weights else d_pos) / pos_temperature
    w_pos = torch.softmax(logits_pos.masked_fill(self_view, float("-inf")), dim=-1)  # (B, V, V)
    ca = (w_pos * alpha * d_pos).sum(dim=-1).mean(dim=-1)  # (B,)

    # Contrastive repulsion: view x's rows against view y's other samples, x < y.
    other = ~torch.eye(b, dtype=torch.bool, device=z.device)
    cr = z.new_zeros(b)
    n_pairs = 0
    for x in range(v):
        for y in range(x + 1, v):
            d_neg = _sq_dists_gram(z[:, x], z[:, y])  # (B, B)
            logits_neg = -(d_neg.detach() if detach_weights else d_neg) / neg_temperature
            w_neg = torch.softmax(logits_neg.masked_fill(~other, float("-inf")), dim=-1)  # (B, B)
            weighted = (w_neg * (-beta) * d_neg).masked_fill(~other, 0.0).sum(dim=-1)  # (B,)
            if debias_prior > 0:
                positive = d_pos[:, x, y]  # (B,) D^{xy}_{ii}, exact
                weighted = (weighted - debias_prior * positive) / (1.0 - debias_prior)
            cr = cr + weighted
            n_pairs += 1
    return checks.verify(reduce(ca + cr / n_pairs, reduction))


def _check_options(
    alpha: float, beta: float, pos_temperature: float, neg_temperature: float, debias_prior: float
) -> None:
    for value, name in (
        (alpha, "alpha"),
        (beta, "beta"),
        (pos_temperature, "pos_temperature"),
        (neg_temperature, "neg_temperature"),
    ):
        check_positive(value, name)
    _check_prior(debias_prior)


class CACRLoss(LossModule):
    """CACR (contrastive attraction + contrastive repulsion); thin wrapper of :func:`cacr_loss`.

    Reference: H. Zheng, X. Chen, J. Yao, H. Yang, C. Li, Y. Zhang, H. Zhang, I. Tsang, J. Zhou,
    M. Zhou, "Contrastive Attraction and Contrastive Repulsion for Representation Learning",
    TMLR 2023 / arXiv 2105.03746. No peer package implements it.

    Example:
        >>> loss_fn = CACRLoss(neg_temperature=1 / 0.9)  # CIFAR-10 setting of the reference
        >>> loss = loss_fn(torch.randn(16, 4, 32))
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        pos_temperature: float = 1.0,
        neg_temperature: float = 1.0,
        debias_prior: float = 0.0,
        detach_weights: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        check_values: bool = True,
    ) -> None:
        super().__init__(normalize=normalize, reduction=reduction, check_values=check_values)
        _check_options(alpha, beta, pos_temperature, neg_temperature, debias_prior)
        self.alpha = alpha
        self.beta = beta
        self.pos_temperature = pos_temperature
        self.neg_temperature = neg_temperature
        self.debias_prior = debias_prior
        self.detach_weights = detach_weights

    def forward(self, views: Tensor) -> Tensor:
        """Loss of ``(B, V, d)`` views."""
        return cacr_loss(
            views,  # (B, V, d)
            alpha=self.alpha,
            beta=self.beta,
            pos_temperature=self.pos_temperature,
            neg_temperature=self.neg_temperature,
            debias_prior=self.debias_prior,
            detach_weights=self.detach_weights,
            **self.options(),
        )
