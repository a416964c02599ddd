"""CLIP: symmetric InfoNCE between two modalities with a learnable temperature.

Reference:
    - [0] Radford et al., "Learning Transferable Visual Models From Natural Language
      Supervision", ICML 2021. open_clip ``src/open_clip/loss.py::ClipLoss``.
"""

from __future__ import annotations

from torch import Tensor

from contrastkit._checks import Reduction
from contrastkit.losses._base import LossModule
from contrastkit.losses._common import full_precision
from contrastkit.losses.info_nce import info_nce
from contrastkit.temperature import LearnableTemperature


@full_precision
def clip_loss(
    a: Tensor,
    b: Tensor,
    *,
    temperature: float | Tensor = 0.07,
    positive_ids: Tensor | None = None,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    check_values: bool = True,
    gather_distributed: bool = False,
) -> Tensor:
    """Compute the CLIP loss ``(CE(a→b) + CE(b→a)) / 2`` over in-batch pairs.

    ``a`` and ``b`` are the paired embeddings of two modalities (image and text);
    ``logits = <a_i, b_j> / τ``; the diagonal positive is in the denominator of both softmaxes.
    This is :func:`info_nce` with ``symmetric=True``; see it for the arguments.

    Peers: equals open_clip ``ClipLoss()(image, text, logit_scale)`` with
    ``logit_scale = 1 / temperature`` (open_clip takes the *exponentiated* scale and does not
    normalise; pass normalised features or keep ``normalize=True`` here).

    Examples:
        >>> import torch
        >>> loss = clip_loss(torch.randn(8, 32), torch.randn(8, 32), temperature=0.07)
    """
    return info_nce(
        a,
        b,
        temperature=temperature,
        symmetric=True,
        positive_ids=positive_ids,
        normalize=normalize,
        reduction=reduction,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        check_values=check_values,
        gather_distributed=gather_distributed,
    )


class CLIPLoss(LossModule):
    """CLIP loss with a learnable temperature (:class:`contrastkit.LearnableTemperature`).

    Inputs: ``forward(a, b, positive_ids=None)`` with paired ``(B, d)`` embeddings of two
    modalities (image, text). The temperature starts at ``temperature`` (CLIP: 0.07) and stays in
    ``[min_temperature, 100]`` (CLIP: ``τ ≥ 0.01``, logit scale ≤ 100) by projection; put this
    module's parameters in the optimizer. Use :class:`InfoNCELoss` (``symmetric=True``) for a
    fixed temperature, :class:`SigLIPLoss` for the sigmoid alternative that needs no softmax over
    the batch, :class:`CWCLLoss` when one modality is frozen and similar pairs should count as
    partial positives.

    Args:
        temperature: initial temperature.
        learnable: learn the temperature (else fixed at ``temperature``).
        min_temperature: lower bound of the learnable temperature.
        normalize: L2-normalise both modalities.
        reduction: ``'mean'`` | ``'sum'`` | ``'none'``.
        chunk_size: tile size of the similarity engine (None: automatic).
        memory_budget: bytes the ``n × m`` logits may keep between forward and backward (None: 1
            GiB; 0: recompute; see :func:`contrastkit.engine.pairwise_lse`).
        gather_distributed: under torch.distributed, contrast the local rows against the global
            batch with correct gradients (see :func:`info_nce`); a no-op on one process.
        check_values: value checks (see :func:`info_nce`).

    Examples:
        >>> import torch
        >>> loss_fn = CLIPLoss()
        >>> loss = loss_fn(torch.randn(8, 32), torch.randn(8, 32))
        >>> loss.backward()  # reaches loss_fn.temperature.log_inverse
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        learnable: bool = True,
        min_temperature: float = 0.01,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        gather_distributed: bool = False,
        check_values: bool = True,
    ) -> None:
        tau = LearnableTemperature(init=temperature, min=min_temperature)
        tau.log_inverse.requires_grad_(learnable)
        super().__init__(
            temperature=tau,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            gather_distributed=gather_distributed,
            check_values=check_values,
        )

    def forward(self, a: Tensor, b: Tensor, positive_ids: Tensor | None = None) -> Tensor:
        """Symmetric loss of paired ``(B, d)`` embeddings of two modalities."""
        return clip_loss(a, b, positive_ids=positive_ids, temperature=self.tau(), **self.options())
