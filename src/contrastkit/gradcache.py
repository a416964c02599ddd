"""Gradient caching: a contrastive loss over a batch larger than the encoders' activations allow.

Reference:
    - [0] Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"
      (GradCache), RepL4NLP 2021. Implemented from the paper.

Why it is exact: the loss depends on the parameters only through the embeddings, so
``∂L/∂θ = Σ_i (∂L/∂r_i)ᵀ ∂r_i/∂θ``. Step 1 embeds the batch chunk by chunk without a graph,
step 2 computes the loss on the embeddings and its gradient ``g_i = ∂L/∂r_i`` (the loss runs on
the similarity engine, so this step is ``O(B·d)`` too), step 3 re-embeds each chunk with a graph
and back-propagates ``g_i`` into the encoder. Peak activation memory is that of one chunk.
Random layers (dropout) draw the same masks in step 3 as in step 1: each chunk's RNG state is
saved and restored. BatchNorm is the exception: its statistics are per chunk, not per batch, and
its running statistics see each chunk twice — use it only where that is acceptable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit._checks import check_chunk_size

Batch = Tensor | Mapping[str, Tensor]


def _rows(batch: Batch) -> int:
    if isinstance(batch, Tensor):
        return int(batch.shape[0])
    sizes = {int(v.shape[0]) for v in batch.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs: every tensor of a mapping needs the same rows, got {sizes}")
    return sizes.pop()


def _slice(batch: Batch, rows: slice) -> Batch:
    if isinstance(batch, Tensor):
        return batch[rows]
    return {k: v[rows] for k, v in batch.items()}


def _call(encoder: nn.Module, batch: Batch) -> Tensor:
    out = encoder(batch) if isinstance(batch, Tensor) else encoder(**batch)
    if not isinstance(out, Tensor) or out.ndim != 2:
        raise ValueError(
            "encoders must return (rows, d) embedding tensors, got "
            f"{type(out).__name__}{'' if not isinstance(out, Tensor) else tuple(out.shape)}"
        )
    return out


class _RNGState:
    """The CPU and all CUDA devices' RNG states, to replay random layers exactly."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        cuda_in_use = torch.cuda.is_available() and torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
        self.cuda = torch.cuda.get_rng_state_all() if cuda_in_use else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def grad_cache_step(
    encoders: Sequence[nn.Module],
    inputs: Sequence[Batch],
    loss_fn: Callable[..., Tensor],
    chunk_size: int,
    **loss_kwargs: Any,
) -> Tensor:
    """Accumulate into the encoders' ``.grad`` the gradient of ``loss_fn`` on the whole batch.

    Equivalent to ``loss_fn(*(enc(x) for enc, x in zip(encoders, inputs)), **kw).backward()``,
    with the activation memory of ``chunk_size`` rows (see the module docstring for why and
    when it is exact). Call ``optimizer.step()`` afterwards as usual; parameters of ``loss_fn``
    (e.g. a learnable temperature) receive their gradient too.

    Args:
        encoders: one module per input (the same module may appear twice, e.g. two views
            through one encoder); each maps a chunk of its input to ``(rows, d)`` embeddings.
        inputs: one batch per encoder — a tensor, or a mapping of tensors (e.g. tokenizer
            output, passed as keyword arguments) — all with the same number of rows.
        loss_fn: maps the full-batch embeddings (one ``(B, d)`` tensor per encoder, in order)
            to a scalar loss, e.g. ``contrastkit.clip_loss`` or a ``CLIPLoss`` module.
        chunk_size: rows per encoder call.
        **loss_kwargs: passed to ``loss_fn``.

    Returns:
        The loss value, detached.

    Raises:
        ValueError: on ``chunk_size < 1``, a different number of encoders and inputs, inputs
            with different numbers of rows, encoders that do not return ``(rows, d)`` tensors,
            or a non-scalar loss.

    Examples:
        >>> import torch, contrastkit as ck
        >>> image_enc, text_enc = torch.nn.Linear(10, 8), torch.nn.Linear(6, 8)
        >>> images, texts = torch.randn(64, 10), torch.randn(64, 6)
        >>> loss = ck.grad_cache_step([image_enc, text_enc], [images, texts], ck.clip_loss, 16)
    """
    check_chunk_size(chunk_size)
    if len(encoders) != len(inputs) or not encoders:
        raise ValueError(
            f"encoders and inputs: expected one input per encoder, got {len(encoders)} "
            f"encoders and {len(inputs)} inputs"
        )
    rows = [_rows(x) for x in inputs]
    if len(set(rows)) != 1:
        raise ValueError(f"inputs: every input needs the same number of rows, got {rows}")
    n = rows[0]
    chunks = [slice(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]

    # Step 1: embeddings without a graph, remembering each chunk's RNG state.
    states: list[list[_RNGState]] = []
    reps: list[Tensor] = []
    with torch.no_grad():
        for encoder, batch in zip(encoders, inputs, strict=True):
            encoder_states, parts = [], []
            for rows_slice in chunks:
                encoder_states.append(_RNGState())
                parts.append(_call(encoder, _slice(batch, rows_slice)))
            states.append(encoder_states)
            reps.append(torch.cat(parts).requires_grad_(True))  # (B, d)

    # Step 2: the loss on the full batch, and its gradient with respect to the embeddings.
    loss = loss_fn(*reps, **loss_kwargs)
    if not isinstance(loss, Tensor) or loss.ndim != 0:
        raise ValueError("loss_fn must return a scalar tensor (use reduction='mean' or 'sum')")
    loss.backward()  # type: ignore[no-untyped-call]
    end_state = _RNGState()

    # Step 3: re-embed each chunk with a graph (same random masks) and push its gradient in.
    for encoder, batch, rep, encoder_states in zip(encoders, inputs, reps, states, strict=True):
        assert rep.grad is not None
        for rows_slice, state in zip(chunks, encoder_states, strict=True):
            state.restore()
            out = _call(encoder, _slice(batch, rows_slice))
            out.backward(rep.grad[rows_slice])  # type: ignore[no-untyped-call]
    end_state.restore()  # the RNG stream continues as after one ordinary forward pass
    return loss.detach()
