"""SogCLR and iSogCLR: global contrastive losses with per-sample moving averages.

SogCLR (Yuan et al., ICML 2022) optimises the *global* contrastive loss (GCL), whose softmax
normaliser runs over every negative of the dataset rather than of the mini-batch. The expectation
over all negatives is tracked per dataset index ``i`` by a moving average ``u_i``, so a small batch
gives an unbiased-in-the-limit gradient. iSogCLR (Qiu et al., ICML 2023) optimises the robust GCL
(RGCL), a KL-constrained DRO over negatives whose dual variable is an *individual* temperature
``τ_i`` per dataset index, updated by momentum SGD next to the network.

For one anchor ``x_i`` with views ``a_i, b_i`` (L2-normalised), ``s_ij`` the cosine between the
anchor view and candidate ``j``, and ``S_i⁻`` its ``2(B - 1)`` in-batch negatives (both views of
every other sample; the anchor itself and its positive are excluded)::

    GCL_i  = τ   · log E_{j∈S_i⁻} exp(h_ij / τ),           h_ij = s_ij - s_{i,i+}
    RGCL_i = τ_i · log E_{j∈S_i⁻} exp(h_ij / τ_i) + τ_i ρ

Update rules (one step, per anchor row, each of the two view directions ``a → ·`` and ``b → ·``)::

    g_i   = (1 / |S_i⁻|) Σ_{j∈S_i⁻} exp(s_ij / τ_i)          batch estimate (raw similarities)
    u_i  ← (1 - γ_i) u_i + γ_i g_i,   γ_i = 1 at the first visit of index i, else γ
    p_ij  = exp(s_ij / τ_i) / u_i                             (no gradient)
    ∇ loss_i = (1 / |S_i⁻|) Σ_j p_ij ∇s_ij - ∇s_{i,i+}         (the paper's gradient)

and, for iSogCLR only::

    grad_τ_i = log u_i + ρ - (1 / |S_i⁻|) Σ_j p_ij s_ij / τ_i    (mean over the two directions)
    m_i     ← (1 - β) m_i + β grad_τ_i
    τ_i     ← clip(τ_i - η m_i, τ_min, τ_max)

The stored ``u_i`` is the mean of the two directions' estimates, as in LibAUC ``GCLoss_v1``.

Conventions chosen here (and how they differ from the peers):

* **u tracks raw similarities** ``E exp(s_ij / τ_i)`` (LibAUC ``GCLoss_v1`` and the official
  unimodal ``SogCLR_DRO_Loss``), not ``E exp(h_ij / τ_i)`` with the positive subtracted (LibAUC's
  bimodal ``GCLoss_v2``). The two give the same weights ``p`` only while ``s_{i,i+}`` does not
  change between visits; the raw convention needs no per-sample positive and is the one LibAUC's
  unimodal parity tests pin.
* **u is stored as log u** (buffer ``log_u``), updated with ``logaddexp``. This is the same
  quantity (``u = exp(log_u)``) but cannot overflow at small temperatures, where
  ``exp(1 / τ)`` exceeds fp32 for ``τ < 0.0113`` (LibAUC's ``GCLoss_v2`` keeps a running max ``b``
  for the same reason).
* **The forward value** is the moving-average estimate of the objective,
  ``τ_i log u_i - s_{i,i+}`` (``+ τ_i ρ`` for iSogCLR), which equals GCL_i/RGCL_i when u is exact.
  Its gradient is exactly the paper's (above): the gradient term is
  ``(g_i / u_i) · τ_i · lse_i`` with ``lse_i = log Σ_j exp(s_ij / τ_i)`` computed by
  :func:`contrastkit.engine.pairwise_lse` (so memory is ``O(B·d)`` on the tiled path), minus its
  detached value. LibAUC returns a surrogate whose *value* is ``Σ_j p_ij s_ij / |S_i⁻| - s_{i,i+}``;
  the values differ, the gradients agree.
* **Reduction.** Each anchor's loss is the *mean* of its two view directions (contrastkit
  convention); LibAUC ``GCLoss_v1`` and the official code *sum* them, so their loss and gradients
  are exactly 2× ours (halve the learning rate, or double ours, when porting a recipe).
* **First-visit γ = 1** is decided per index by the ``seen`` buffer, not by an epoch counter or by
  LibAUC's batch-level test ``u[index].sum() == 0`` (which uses γ for a whole batch as soon as one
  index in it was seen). LibAUC's ``'cosine'`` epoch schedule is available by passing
  ``gamma=cosine_gamma(epoch, gamma, decay_epochs)`` to ``forward``.
* **Duplicated indices in one batch** write the mean of their new states (log-domain mean for u).

References:
    [1] Yuan et al., "Provable Stochastic Optimization for Global Contrastive Learning: Small Batch
        Does Not Harm Performance", ICML 2022. https://arxiv.org/abs/2202.12387
    [2] Qiu et al., "Not All Semantics are Created Equal: Contrastive Self-supervised Learning with
        Automatic Temperature Individualization", ICML 2023. https://arxiv.org/abs/2305.11965
    LibAUC ``libauc/losses/contrastive.py`` (``GCLoss_v1``), libauc 2.0.1.

"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_positive,
    check_reduction,
    check_temperature,
    reduce,
    validate_pair,
)
from contrastkit.engine import Pairs, pairwise_lse
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision, prepare


class SogCLRStep(NamedTuple):
    """Output of :func:`sogclr_loss`.

    Attributes:
        loss: the reduced loss (per anchor for ``reduction='none'``).
        log_u: ``(B,)`` new ``log u`` rows to write back at the batch's indices.

    """

    loss: Tensor
    log_u: Tensor


class ISogCLRStep(NamedTuple):
    """Output of :func:`isogclr_loss`.

    Attributes:
        loss: the reduced loss (per anchor for ``reduction='none'``).
        log_u: ``(B,)`` new ``log u`` rows.
        temperatures: ``(B,)`` new individual temperatures ``τ_i``.
        momentum: ``(B,)`` new momentum ``m_i`` of the temperature gradient.
        grad_temperature: ``(B,)`` this step's (clipped) temperature gradient ``grad_τ_i``.

    """

    loss: Tensor
    log_u: Tensor
    temperatures: Tensor
    momentum: Tensor
    grad_temperature: Tensor


def cosine_gamma(epoch: int, gamma: float, decay_epochs: int) -> float:
    """LibAUC's ``'cosine'`` γ schedule: from 1 at epoch 0 down to ``gamma`` at ``decay_epochs``.

    ``γ(e) = γ_min + (1 - γ_min) · (1 + cos(π e / decay_epochs)) / 2`` for ``e < decay_epochs``,
    else ``γ_min``. Pass the result as ``gamma=`` to :class:`SogCLRLoss` / :class:`ISogCLRLoss`.

    Args:
        epoch: current epoch (0-based), ``>= 0``.
        gamma: final value ``γ_min`` in ``(0, 1]``.
        decay_epochs: epochs of the decay, ``> 0``.

    Returns:
        γ for this epoch.

    Raises:
        ValueError: on a negative epoch, ``gamma`` outside ``(0, 1]`` or ``decay_epochs <= 0``.

    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    _check_unit_interval(gamma, "gamma")
    if decay_epochs <= 0:
        raise ValueError(f"decay_epochs must be > 0, got {decay_epochs}")
    if epoch >= decay_epochs:
        return gamma
    return gamma + (1.0 - gamma) * 0.5 * (1.0 + math.cos(math.pi * epoch / decay_epochs))


@full_precision
def sogclr_loss(
    a: Tensor,
    b: Tensor,
    log_u: Tensor,
    seen: Tensor,
    *,
    temperature: float | Tensor = 0.1,
    gamma: float = 0.9,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> SogCLRStep:
    """SogCLR step: GCL value and the paper's gradient, plus the new moving averages.

    Pure function: the state rows of this batch come in (``log_u``, ``seen``, gathered at the
    batch's dataset indices) and the new rows go out; :class:`SogCLRLoss` owns the buffers.
    See the module docstring for the formulas and conventions. The positive is *not* in the
    denominator (it is subtracted: ``h = s - s_pos``); each anchor has ``2(B - 1)`` negatives;
    the per-anchor loss is the mean of its two view directions.

    Args:
        a: ``(B, d)`` first view.
        b: ``(B, d)`` second view; row ``i`` of ``a`` and ``b`` are the positive pair.
        log_u: ``(B,)`` stored ``log u`` of the batch's indices (ignored where not ``seen``).
        seen: ``(B,)`` bool, whether each index was visited before (else ``γ_i = 1``).
        temperature: ``τ > 0``, a number or a one-element tensor (no gradient flows into it);
            default 0.1 (LibAUC ``GCLoss_v1``).
        gamma: moving-average factor γ in ``(0, 1]``; default 0.9 (LibAUC; the papers' scripts
            use 0.8).
        normalize: L2-normalise ``a`` and ``b`` first.
        reduction: ``'mean' | 'sum' | 'none'`` over anchors.
        chunk_size: tile edge of the similarity engine (None: automatic).
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check for NaN/inf (host sync).

    Returns:
        :class:`SogCLRStep` ``(loss, log_u)``.

    Raises:
        ValueError: on bad shapes, dtypes, NaN/inf, ``B < 2``, or hyper-parameters out of range.

    Example:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> log_u, seen = torch.zeros(8), torch.zeros(8, dtype=torch.bool)
        >>> step = sogclr_loss(a, b, log_u, seen, temperature=0.1)
        >>> step.log_u.shape
        torch.Size([8])

    """
    _check_unit_interval(gamma, "gamma")
    check_reduction(reduction)
    checks = _check_inputs(a, b, log_u, seen, normalize, check_values)
    check_temperature(temperature, checks)
    a, b = _upcast(a, b)
    if isinstance(temperature, Tensor):
        tau = temperature.detach().reshape(()).to(a.dtype).expand(a.shape[0])
    else:
        tau = a.new_full((a.shape[0],), float(temperature))
    out = _gcl_step(
        a, b, log_u, seen, tau, gamma, normalize, chunk_size, memory_budget, need_tau_grad=False
    )
    return checks.verify(SogCLRStep(reduce(out.per_anchor, reduction), out.log_u))


@full_precision
def isogclr_loss(
    a: Tensor,
    b: Tensor,
    log_u: Tensor,
    seen: Tensor,
    temperatures: Tensor,
    momentum: Tensor,
    *,
    gamma: float = 0.9,
    rho: float = 0.3,
    eta: float = 0.01,
    beta: float = 0.9,
    tau_min: float = 0.05,
    tau_max: float = 0.7,
    grad_clip: float | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
) -> ISogCLRStep:
    """ISogCLR step: RGCL value and gradient, new moving averages and individual temperatures.

    Pure function: state rows in, new state rows out (see :func:`sogclr_loss`). The network
    gradient uses the temperatures *before* this step's update, as in LibAUC and the paper.

    Args:
        a: ``(B, d)`` first view.
        b: ``(B, d)`` second view.
        log_u: ``(B,)`` stored ``log u`` rows.
        seen: ``(B,)`` bool first-visit flags.
        temperatures: ``(B,)`` current individual temperatures ``τ_i > 0``.
        momentum: ``(B,)`` momentum ``m_i`` of the temperature gradient.
        gamma: moving-average factor γ in ``(0, 1]``; default 0.9 (LibAUC).
        rho: DRO radius ρ ``>= 0``; default 0.3 (LibAUC unimodal; the paper's CIFAR recipe 0.4).
        eta: temperature step size η ``> 0``; default 0.01 (LibAUC).
        beta: momentum factor β in ``(0, 1]``; default 0.9 (LibAUC).
        tau_min: lower clip of ``τ_i``; default 0.05 (LibAUC unimodal).
        tau_max: upper clip of ``τ_i``; default 0.7 (LibAUC unimodal).
        grad_clip: clamp ``grad_τ`` to ``±grad_clip`` before the momentum (the official code uses
            3.0; LibAUC does not clip: None).
        normalize: L2-normalise ``a`` and ``b`` first.
        reduction: ``'mean' | 'sum' | 'none'`` over anchors.
        chunk_size: tile edge of the similarity engine (None: automatic).
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        check_values: check NaN/inf (inputs, the seen rows of ``log_u``, the result) and
            ``temperatures > 0`` (one host sync).

    Returns:
        :class:`ISogCLRStep` ``(loss, log_u, temperatures, momentum, grad_temperature)``.

    Raises:
        ValueError: on bad shapes, dtypes, NaN/inf, ``B < 2``, or hyper-parameters out of range.

    Example:
        >>> a, b = torch.randn(8, 16), torch.randn(8, 16)
        >>> log_u, seen = torch.zeros(8), torch.zeros(8, dtype=torch.bool)
        >>> tau, m = torch.full((8,), 0.1), torch.zeros(8)
        >>> step = isogclr_loss(a, b, log_u, seen, tau, m)
        >>> bool((step.temperatures >= 0.05).all())
        True

    """
    _check_isogclr_hparams(gamma, rho, eta, beta, tau_min, tau_max, grad_clip)
    check_reduction(reduction)
    checks = _check_inputs(a, b, log_u, seen, normalize, check_values)
    batch = a.shape[0]
    _check_rows(temperatures, batch, "temperatures")
    _check_rows(momentum, batch, "momentum")
    checks.require(
        ((temperatures > 0) & torch.isfinite(temperatures)).all(),
        "temperatures must be finite and > 0 for every row",
    )
    checks.finite("momentum", momentum)
    a, b = _upcast(a, b)
    tau = temperatures.detach().to(a.dtype)
    out = _gcl_step(
        a, b, log_u, seen, tau, gamma, normalize, chunk_size, memory_budget, need_tau_grad=True
    )
    assert out.grad_tau is not None
    grad_tau = out.grad_tau + rho
    if grad_clip is not None:
        grad_tau = grad_tau.clamp(-grad_clip, grad_clip)
    new_m, new_tau = update_temperature(
        tau, momentum.detach().to(a.dtype), grad_tau, eta=eta, beta=beta, tau_min=tau_min,
        tau_max=tau_max,
    )  # fmt: skip
    per_anchor = out.per_anchor + rho * tau  # RGCL value adds τ_i ρ (constant for the network)
    return checks.verify(
        ISogCLRStep(reduce(per_anchor, reduction), out.log_u, new_tau, new_m, grad_tau)
    )


def update_temperature(
    temperature: Tensor,
    momentum: Tensor,
    grad_temperature: Tensor,
    *,
    eta: float,
    beta: float,
    tau_min: float,
    tau_max: float,
) -> tuple[Tensor, Tensor]:
    """ISogCLR's momentum step on individual temperatures (pure; no gradient).

    ``m ← (1 - β) m + β grad_τ``, then ``τ ← clip(τ - η m, τ_min, τ_max)``.

    Args:
        temperature: ``(B,)`` current ``τ_i``.
        momentum: ``(B,)`` current ``m_i``.
        grad_temperature: ``(B,)`` this step's ``grad_τ_i``.
        eta: step size η.
        beta: momentum factor β.
        tau_min: lower clip.
        tau_max: upper clip.

    Returns:
        ``(momentum, temperature)``, the new rows.

    """
    new_m = (1.0 - beta) * momentum + beta * grad_temperature
    new_tau = (temperature - eta * new_m).clamp(tau_min, tau_max)
    return new_m.detach(), new_tau.detach()


class SogCLRLoss(LossModule):
    """SogCLR: global contrastive loss with per-index moving averages (Yuan et al., ICML 2022).

    Owns the per-sample state as registered buffers sized by ``num_samples`` (so it follows
    ``.to(device)``, ``.double()`` and ``state_dict``): ``log_u`` (``log u_i``) and ``seen``
    (first-visit flags). The maths is :func:`sogclr_loss`; see the module docstring for formulas,
    the raw-similarity ``u`` convention and the factor 2 against LibAUC.

    Attributes:
        num_samples: dataset size N (indices must lie in ``[0, N)``).
        temperature: τ.
        gamma: default moving-average factor γ (overridable per call).

    Example:
        >>> loss_fn = SogCLRLoss(num_samples=100, temperature=0.1)
        >>> a = torch.randn(8, 16, requires_grad=True)
        >>> b = torch.randn(8, 16, requires_grad=True)
        >>> index = torch.arange(8)  # dataset indices of the batch
        >>> loss = loss_fn(a, b, index)
        >>> loss.backward()
        >>> bool(loss_fn.seen[:8].all())
        True

    """

    log_u: Tensor
    seen: Tensor

    def __init__(
        self,
        num_samples: int,
        *,
        temperature: float | Tensor | nn.Module = 0.1,
        gamma: float = 0.9,
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
        _check_num_samples(num_samples)
        _check_unit_interval(gamma, "gamma")
        self.num_samples = num_samples
        self.gamma = float(gamma)
        self.register_buffer("log_u", torch.zeros(num_samples))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))

    @property
    def u(self) -> Tensor:
        """``(N,)`` moving averages ``u_i`` (0 for never-visited indices, as LibAUC's ``u``)."""
        return torch.where(self.seen, self.log_u.exp(), torch.zeros_like(self.log_u))

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        index: Tensor,
        *,
        gamma: float | None = None,
    ) -> Tensor:
        """Compute the loss of a batch and update the state of its indices.

        Args:
            a: ``(B, d)`` first view.
            b: ``(B, d)`` second view.
            index: ``(B,)`` integer dataset indices of the rows.
            gamma: this call's γ (e.g. from :func:`cosine_gamma`); None uses ``self.gamma``.

        Returns:
            The loss (reduced as configured).

        """
        idx = _check_index(index, a, self.num_samples, self.check_values)
        log_u = self.log_u[idx].to(a.device)  # (B,)
        seen = self.seen[idx].to(a.device)  # (B,)
        step = sogclr_loss(
            a, b, log_u, seen,
            temperature=self.tau(),
            gamma=self.gamma if gamma is None else gamma,
            **self.options(),
        )  # fmt: skip
        with torch.no_grad():
            _write_rows(self.log_u, idx, step.log_u)
            self.seen.index_fill_(0, idx, True)
        return step.loss


class ISogCLRLoss(LossModule):
    """ISogCLR: robust GCL with individual, learned temperatures (Qiu et al., ICML 2023).

    Registered buffers sized by ``num_samples``: ``log_u``, ``seen`` (as :class:`SogCLRLoss`),
    ``temperatures`` (``τ_i``, initialised to ``temperature``) and ``momentum`` (``m_i``). The
    maths is :func:`isogclr_loss`. Defaults are LibAUC ``GCLoss_v1(enable_isogclr=True)``'s; the
    paper's CIFAR-100 recipe is ``rho=0.4, gamma=0.8, beta=0.5, eta=0.03, grad_clip=3.0``.

    Attributes:
        num_samples: dataset size N.
        gamma: default moving-average factor γ (overridable per call).
        rho, eta, beta, tau_min, tau_max, grad_clip: iSogCLR hyper-parameters.

    Example:
        >>> loss_fn = ISogCLRLoss(num_samples=100, temperature=0.1)
        >>> a = torch.randn(8, 16, requires_grad=True)
        >>> b = torch.randn(8, 16, requires_grad=True)
        >>> loss = loss_fn(a, b, torch.arange(8))
        >>> loss.backward()
        >>> loss_fn.temperatures.shape
        torch.Size([100])

    """

    log_u: Tensor
    seen: Tensor
    temperatures: Tensor
    momentum: Tensor

    def __init__(
        self,
        num_samples: int,
        *,
        temperature: float = 0.1,
        gamma: float = 0.9,
        rho: float = 0.3,
        eta: float = 0.01,
        beta: float = 0.9,
        tau_min: float = 0.05,
        tau_max: float = 0.7,
        grad_clip: float | None = None,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        check_values: bool = True,
    ) -> None:
        super().__init__(
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            check_values=check_values,
        )
        _check_num_samples(num_samples)
        check_temperature(temperature)
        _check_isogclr_hparams(gamma, rho, eta, beta, tau_min, tau_max, grad_clip)
        self.num_samples = num_samples
        self.gamma = float(gamma)
        self.rho, self.eta, self.beta = float(rho), float(eta), float(beta)
        self.tau_min, self.tau_max = float(tau_min), float(tau_max)
        self.grad_clip = grad_clip
        self.register_buffer("log_u", torch.zeros(num_samples))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))
        self.register_buffer("temperatures", torch.full((num_samples,), float(temperature)))
        self.register_buffer("momentum", torch.zeros(num_samples))

    @property
    def u(self) -> Tensor:
        """``(N,)`` moving averages ``u_i`` (0 for never-visited indices)."""
        return torch.where(self.seen, self.log_u.exp(), torch.zeros_like(self.log_u))

    def forward(
        self,
        a: Tensor,
        b: Tensor,
        index: Tensor,
        *,
        gamma: float | None = None,
    ) -> Tensor:
        """Compute the loss of a batch and update ``u``, ``τ`` and ``m`` of its indices.

        Args:
            a: ``(B, d)`` first view.
            b: ``(B, d)`` second view.
            index: ``(B,)`` integer dataset indices of the rows.
            gamma: this call's γ (e.g. from :func:`cosine_gamma`); None uses ``self.gamma``.

        Returns:
            The loss (reduced as configured).

        """
        idx = _check_index(index, a, self.num_samples, self.check_values)
        step = isogclr_loss(
            a, b,
            self.log_u[idx].to(a.device),  # (B,)
            self.seen[idx].to(a.device),  # (B,)
            self.temperatures[idx].to(a.device),  # (B,)
            self.momentum[idx].to(a.device),  # (B,)
            gamma=self.gamma if gamma is None else gamma,
            rho=self.rho, eta=self.eta, beta=self.beta,
            tau_min=self.tau_min, tau_max=self.tau_max, grad_clip=self.grad_clip,
            **self.options(),
        )  # fmt: skip
        with torch.no_grad():
            _write_rows(self.log_u, idx, step.log_u)
            _write_rows(self.temperatures, idx, step.temperatures)
            _write_rows(self.momentum, idx, step.momentum)
            self.seen.index_fill_(0, idx, True)
        return step.loss


# --------------------------------------------------------------------------------------------
# Core


class _GCLOut(NamedTuple):
    per_anchor: Tensor  # (B,) mean of the two directions
    log_u: Tensor  # (B,) stored log u (mean of the two directions' u)
    grad_tau: Tensor | None  # (B,) grad_τ without ρ, mean of the two directions


def _gcl_step(
    a: Tensor,
    b: Tensor,
    log_u_old: Tensor,
    seen: Tensor,
    tau: Tensor,
    gamma: float,
    normalize: bool,
    chunk_size: int | None,
    memory_budget: int | None,
    *,
    need_tau_grad: bool,
) -> _GCLOut:
    """Shared SogCLR/iSogCLR step; ``tau`` is ``(B,)`` and carries no gradient."""
    a, b = prepare(a, normalize), prepare(b, normalize)
    batch = a.shape[0]
    dtype = a.dtype
    log_u_old = log_u_old.detach().to(dtype)
    seen = seen.to(torch.bool)
    tau2 = torch.cat([tau, tau]).to(dtype)  # (2B,) rows: a_0..a_{B-1}, b_0..b_{B-1}
    views = torch.cat([a, b])  # (2B, d): anchors and candidates
    ids = torch.arange(batch, device=a.device).repeat(2)  # (2B,) excludes self and positive
    pairs = Pairs(row_ids=ids, col_ids=ids)
    log_neg = math.log(2 * (batch - 1))  # log |S_i⁻|
    scaled = views / tau2[:, None]  # (2B, d) anchors divided by their own τ_i
    stats = pairwise_lse(
        scaled, views, pairs, chunk_size=chunk_size, memory_budget=memory_budget
    ).rows
    assert stats is not None
    lse = stats.lse  # (2B,) log Σ_{j∈S⁻} exp(s_ij / τ_i), differentiable
    log_g = lse.detach() - log_neg  # (2B,) log of the batch estimate g
    # Moving average in log domain: log((1-γ) u + γ g); γ_i = 1 at the first visit.
    gam = views.new_tensor(gamma)
    old2 = torch.cat([log_u_old, log_u_old])  # (2B,)
    seen2 = torch.cat([seen, seen])  # (2B,)
    blended = torch.logaddexp(torch.log1p(-gam) + old2, torch.log(gam) + log_g)
    log_u_dir = torch.where(seen2, blended, log_g)  # (2B,) log u^(a), log u^(b)
    weight = torch.exp(log_g - log_u_dir)  # (2B,) g / u, no gradient
    s_pos = (a * b).sum(1)  # (B,)
    value = tau2 * log_u_dir - torch.cat([s_pos, s_pos])  # (2B,) τ log u - s_pos (grad via s_pos)
    per_dir = value + weight * tau2 * (lse - lse.detach())  # (2B,) adds the SogCLR gradient
    per_anchor = 0.5 * (per_dir[:batch] + per_dir[batch:])  # (B,)
    log_u_new = torch.logaddexp(log_u_dir[:batch], log_u_dir[batch:]) - math.log(2.0)
    grad_tau = None
    if need_tau_grad:
        # Σ_j p_ij (s_ij / τ_i) / |S⁻| = (g/u) · E_softmax[s / τ]; the softmax mean of the logits
        # is x_i · ∂lse_i/∂x_i with x_i the scaled anchor (one extra engine pass, O(B·d)).
        with torch.enable_grad():
            x = scaled.detach().requires_grad_(True)
            rows = pairwise_lse(
                x, views.detach(), pairs, chunk_size=chunk_size, memory_budget=memory_budget
            ).rows
            assert rows is not None
            (dx,) = torch.autograd.grad(rows.lse.sum(), x)
        mean_logit = (x.detach() * dx).sum(1)  # (2B,)
        g_dir = log_u_dir - weight * mean_logit  # (2B,) grad_τ without ρ
        grad_tau = 0.5 * (g_dir[:batch] + g_dir[batch:])
    return _GCLOut(per_anchor, log_u_new.detach(), grad_tau)


# --------------------------------------------------------------------------------------------
# Checks and state writes


def _write_rows(buffer: Tensor, idx: Tensor, rows: Tensor) -> None:
    """Write ``rows`` at ``idx``; rows sharing an index are averaged (deterministic result)."""
    src = rows.to(device=buffer.device, dtype=buffer.dtype)
    with warnings.catch_warnings():  # index_reduce_ is flagged beta; its mean semantics are stable
        warnings.simplefilter("ignore", UserWarning)
        buffer.index_reduce_(0, idx, src, "mean", include_self=False)


def _check_inputs(
    a: Tensor, b: Tensor, log_u: Tensor, seen: Tensor, normalize: bool, check_values: bool
) -> ValueChecks:
    """Views, and the state rows: ``log_u`` must be finite where ``seen`` (it is read there)."""
    checks = validate_pair(a, b, normalize=normalize, check_values=check_values)
    _check_rows(log_u, a.shape[0], "log_u")
    _check_seen(seen, a.shape[0])
    checks.require(
        (torch.isfinite(log_u) | ~seen).all(), "log_u contains NaN or inf values at seen rows"
    )
    return checks


def _upcast(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    return a, b


def _check_rows(x: Tensor, batch: int, name: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of shape ({batch},)")
    if x.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(x.shape)}")


def _check_seen(seen: Tensor, batch: int) -> None:
    if not isinstance(seen, torch.Tensor) or seen.dtype != torch.bool:
        raise ValueError(f"seen must be a bool tensor of shape ({batch},)")
    if seen.shape != (batch,):
        raise ValueError(f"seen must have shape ({batch},), got {tuple(seen.shape)}")


def _check_index(index: Tensor, a: Tensor, num_samples: int, check_values: bool) -> Tensor:
    """Validate dataset indices against the batch and N; return them as int64."""
    if not isinstance(index, torch.Tensor):
        raise ValueError(f"index must be a torch.Tensor, got {type(index).__name__}")
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise ValueError(f"index must be an integer tensor, got dtype {index.dtype}")
    if not isinstance(a, torch.Tensor) or a.ndim != 2:
        raise ValueError(f"a must have shape (batch, dim), got {tuple(getattr(a, 'shape', ()))}")
    if index.shape != (a.shape[0],):
        raise ValueError(f"index must have shape ({a.shape[0]},), got {tuple(index.shape)}")
    if check_values and index.numel() > 0:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= num_samples:
            raise ValueError(
                f"index must lie in [0, num_samples={num_samples}), got values in [{lo}, {hi}]"
            )
    return index.long()


def _check_num_samples(num_samples: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")


def _check_unit_interval(value: float, name: str) -> None:
    """Check ``value`` lies in ``(0, 1]`` (γ, β)."""
    check_positive(value, name)
    if value > 1:
        raise ValueError(f"{name} must be in (0, 1], got {value}")


def _check_isogclr_hparams(
    gamma: float,
    rho: float,
    eta: float,
    beta: float,
    tau_min: float,
    tau_max: float,
    grad_clip: float | None,
) -> None:
    _check_unit_interval(gamma, "gamma")
    _check_unit_interval(beta, "beta")
    check_positive(eta, "eta")
    if not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite number >= 0, got {rho}")
    check_positive(tau_min, "tau_min")
    check_positive(tau_max, "tau_max")
    if tau_min > tau_max:
        raise ValueError(f"tau_min must be <= tau_max, got {tau_min} > {tau_max}")
    if grad_clip is not None:
        check_positive(grad_clip, "grad_clip")
