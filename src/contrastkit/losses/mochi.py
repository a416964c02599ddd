"""MoCHi: hard-negative mixing on top of MoCo's queue (:mod:`contrastkit.losses.moco`).

MoCHi (Kalantidis et al., NeurIPS 2020) adds, per query, synthetic negatives mixed from that
query's hardest queue negatives:

1. ``Q̃_i`` = the ``N`` queue rows with the largest ``q_iᵀ n`` (per query),
2. ``s`` mixes ``h = normalize(α n_p + (1 - α) n_r)``, ``n_p, n_r ∈ Q̃_i``, ``α ~ U(0, 1)``,
3. ``s'`` query mixes ``h' = normalize(β q_i + (1 - β) n_r)``, ``n_r ∈ Q̃_i``, ``β ~ U(0, 0.5)``,

which join the denominator with the same temperature, are detached, and are never enqueued.

References:
    [1] He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.
    [2] Kalantidis et al., "Hard Negative Mixing for Contrastive Learning", NeurIPS 2020.
        https://arxiv.org/abs/2010.01028 (no official code; project page europe.naverlabs.com/mochi)

"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._checks import (
    Reduction,
    ValueChecks,
    check_compatible,
    check_count,
    check_same_dim,
    check_tensor,
)
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import prepare
from contrastkit.losses.moco import moco_loss


def mochi_negatives(
    q: Tensor,
    queue_features: Tensor,
    *,
    n_hard: int,
    n_mix: int,
    n_query_mix: int,
    generator: torch.Generator | None = None,
    normalize: bool = True,
    check_values: bool = True,
) -> Tensor:
    """MoCHi synthetic hard negatives, sampled independently for each query.

    For each query ``q_i`` (all per query: its own top-``n_hard`` set and its own random draws)::

        Q̃_i   = top-n_hard rows n of the queue by q_iᵀn
        h_ik  = normalize(α_ik n_p + (1 - α_ik) n_r),  p, r ~ U(Q̃_i),  α_ik ~ U(0, 1)
        h'_ik = normalize(β_ik q_i + (1 - β_ik) n_r),  r ~ U(Q̃_i),     β_ik ~ U(0, 0.5)

    with ``k < n_mix`` mixes ``h`` and ``k < n_query_mix`` query mixes ``h'``.

    Random draws, in this order, from ``generator``: ``p`` and ``r`` indices ``(B, n_mix)`` each,
    ``α`` ``(B, n_mix)``, ``r'`` ``(B, n_query_mix)``, ``β`` ``(B, n_query_mix)``. Pairs with
    ``p = r`` are allowed (as in the paper's sampling). The result is detached: synthetic negatives
    carry no gradient and must not be enqueued.

    Args:
        q: ``(B, d)`` queries.
        queue_features: ``(K, d)`` queue negatives, ``K >= n_hard``.
        n_hard: ``N``, hardest negatives kept per query (``>= 1``).
        n_mix: ``s``, negative–negative mixes per query (``>= 0``).
        n_query_mix: ``s'``, query–negative mixes per query (``>= 0``).
        generator: RNG for the draws (on the query's device); None uses the global RNG.
        normalize: L2-normalise ``query`` and the queue before ranking and mixing.
        check_values: check for NaN/inf (host sync).

    Returns:
        ``(B, n_mix + n_query_mix, d)`` unit-norm synthetic negatives: the ``n_mix`` negative
        mixes first, then the ``n_query_mix`` query mixes.

    Raises:
        ValueError: on bad shapes, NaN/inf, or counts out of range (``n_hard > K``).

    Example:
        >>> q, queue = torch.randn(4, 8), torch.randn(64, 8)
        >>> mochi_negatives(q, queue, n_hard=16, n_mix=8, n_query_mix=4).shape
        torch.Size([4, 12, 8])

    """
    check_tensor(q, "q")
    check_tensor(queue_features, "queue_features")
    check_same_dim(q, queue_features, ("q", "queue_features"))
    check_compatible([("q", q), ("queue_features", queue_features)])
    _check_counts(n_hard, n_mix, n_query_mix)
    if n_hard > queue_features.shape[0]:
        raise ValueError(
            f"n_hard must be <= the number of queue rows ({queue_features.shape[0]}), got {n_hard}"
        )
    checks = ValueChecks(check_values, "q")
    for name, x in (("q", q), ("queue_features", queue_features)):
        checks.finite(name, x)
        if normalize:
            checks.nonzero_rows(name, x)
    checks.run()
    batch, dim = q.shape
    device = q.device
    with torch.no_grad():
        zq = prepare(q.detach(), normalize)  # (B, d)
        zn = prepare(queue_features.detach(), normalize).to(zq.dtype)  # (K, d)
        hard_idx = (zq @ zn.T).topk(n_hard, dim=1).indices  # (B, N), per query
        hard = zn[hard_idx]  # (B, N, d): each query's own hard set

        def pick(ids: Tensor) -> Tensor:  # (B, m) ids into each query's hard set -> (B, m, d)
            return torch.take_along_dim(hard, ids[..., None], dim=1)

        p = torch.randint(n_hard, (batch, n_mix), generator=generator, device=device)
        r = torch.randint(n_hard, (batch, n_mix), generator=generator, device=device)
        alpha = torch.rand(batch, n_mix, 1, generator=generator, device=device, dtype=zq.dtype)
        r2 = torch.randint(n_hard, (batch, n_query_mix), generator=generator, device=device)
        beta = 0.5 * torch.rand(
            batch, n_query_mix, 1, generator=generator, device=device, dtype=zq.dtype
        )
        mixed = alpha * pick(p) + (1.0 - alpha) * pick(r)  # (B, s, d)
        query_mixed = beta * zq[:, None, :] + (1.0 - beta) * pick(r2)  # (B, s', d)
        out = torch.cat([mixed, query_mixed], dim=1)  # (B, s + s', d)
        out = F.normalize(out, dim=-1) if out.numel() else out.reshape(batch, 0, dim)
    return out


class MoCHiLoss(LossModule):
    """MoCo loss with MoCHi(N, s, s') synthetic hard negatives (Kalantidis et al., NeurIPS 2020).

    ``forward(q, k, queue_features, generator=None)`` draws :func:`mochi_negatives` for every
    query and passes them to :func:`moco_loss` as ``extra_negatives``. While the queue holds fewer
    than ``n_hard`` rows, all of them form the hard set. The paper's warm-up (no mixing for the
    first epochs) is the caller's choice: use :class:`MoCoLoss` for those epochs.

    Args:
        n_hard: ``N``; default 1024.
        n_mix: ``s``; default 1024.
        n_query_mix: ``s'``; default 128 (the ImageNet-100 configuration MoCHi(1024, 1024, 128);
            the paper also reports (512, 1024, 512) and, on ImageNet-1K, (256, 512, 0) and
            (128, 1024, 512)).
        temperature: ``τ > 0``; default 0.2 (MoCo-v2).
        normalize: L2-normalise inputs.
        reduction: ``'mean' | 'sum' | 'none'``.
        chunk_size: tile edge of the similarity engine.
        check_values: value checks (see :func:`contrastkit.moco_loss`).

    Example:
        >>> loss_fn = MoCHiLoss(n_hard=16, n_mix=8, n_query_mix=4)
        >>> q = torch.randn(4, 8, requires_grad=True)
        >>> k, queue = torch.randn(4, 8), torch.randn(64, 8)
        >>> loss_fn(q, k, queue, generator=torch.Generator().manual_seed(0)).backward()

    """

    def __init__(
        self,
        *,
        n_hard: int = 1024,
        n_mix: int = 1024,
        n_query_mix: int = 128,
        temperature: float | Tensor | nn.Module = 0.2,
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
        _check_counts(n_hard, n_mix, n_query_mix)
        self.n_hard, self.n_mix, self.n_query_mix = n_hard, n_mix, n_query_mix

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        queue_features: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss of queries ``q`` (B, d) vs keys ``k`` (B, d), queue rows (K, d) and mixes."""
        extra = None
        n_queue = queue_features.shape[0] if isinstance(queue_features, Tensor) else 0
        if n_queue > 0 and self.n_mix + self.n_query_mix > 0:
            extra = mochi_negatives(
                q,
                queue_features,
                n_hard=min(self.n_hard, n_queue),
                n_mix=self.n_mix,
                n_query_mix=self.n_query_mix,
                generator=generator,
                normalize=self.normalize,
                check_values=self.check_values,
            )  # (B, s + s', d)
        return moco_loss(
            q,
            k,
            queue_features,
            extra_negatives=extra,
            temperature=self.tau(),
            **self.options(),
        )


def _check_counts(n_hard: int, n_mix: int, n_query_mix: int) -> None:
    check_count(n_hard, "n_hard", minimum=1)
    check_count(n_mix, "n_mix", minimum=0)
    check_count(n_query_mix, "n_query_mix", minimum=0)
