"""A MoCo-style FIFO memory queue of past embeddings (and optionally their labels).

MoCo (He et al., CVPR 2020) decouples the number of negatives from the batch size by keeping the
keys of the last ``K`` samples in a queue: each step reads the queue as negatives, then enqueues
the current keys (detached) and drops the oldest. Supervised objectives (SupCon with a memory,
cross-batch memory) also need the *labels* of the stored rows, so the queue can keep them.

All state is in registered buffers (``features``, ``labels``, ``pointer``, ``filled``), so the
queue follows ``.to(device)`` / ``.half()`` and is saved and restored by ``state_dict``. Reading
returns only the rows written so far (the queue starts empty, not with random vectors as in the
MoCo code), in storage order; the order does not matter to a softmax denominator.

References:
    [1] He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.

"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from contrastkit._checks import check_embeddings, check_labels


class MemoryQueue(nn.Module):
    """FIFO queue of ``size`` embeddings of dimension ``dim``, with optional integer labels.

    ``enqueue`` stores detached copies (cast to the buffer dtype) at the write pointer and wraps
    around; a batch larger than the queue keeps only its last ``size`` rows. Reads
    (:meth:`get_features`, :meth:`get_labels`) return the ``len(queue)`` filled rows. The number
    of filled rows is mirrored in a Python int (restored on ``load_state_dict``), so reading never
    synchronises with the device.

    Args:
        size: capacity ``K`` (MoCo-v2: 65536).
        dim: embedding dimension ``d``.
        with_labels: also store one integer label per row (for supervised losses).
        dtype: dtype of the stored features; default fp32.

    Raises:
        ValueError: if ``size`` or ``dim`` is not a positive integer.

    Example:
        >>> queue = MemoryQueue(size=16, dim=8, with_labels=True)
        >>> queue.enqueue(torch.randn(4, 8), labels=torch.tensor([0, 1, 0, 2]))
        >>> queue.get_features().shape, queue.get_labels().tolist()
        (torch.Size([4, 8]), [0, 1, 0, 2])
        >>> # MoCo step: negatives = queue.get_features(); loss(...); queue.enqueue(keys)

    """

    features: Tensor
    labels: Tensor | None
    pointer: Tensor
    filled: Tensor

    def __init__(
        self,
        size: int,
        dim: int,
        *,
        with_labels: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        for name, value in (("size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        self.size = size
        self.dim = dim
        self.with_labels = with_labels
        self.register_buffer("features", torch.zeros(size, dim, dtype=dtype))
        self.register_buffer(
            "labels", torch.full((size,), -1, dtype=torch.long) if with_labels else None
        )
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self._filled = 0  # host mirror of ``filled``
        self._pointer = 0  # host mirror of ``pointer``
        self.register_load_state_dict_post_hook(_sync_mirrors)  # type: ignore[no-untyped-call]

    def __len__(self) -> int:
        """Return the number of filled rows (``<= size``)."""
        return self._filled

    @property
    def is_full(self) -> bool:
        """Whether every slot has been written at least once."""
        return self._filled == self.size

    @torch.no_grad()
    def enqueue(
        self, features: Tensor, labels: Tensor | None = None, *, check_values: bool = True
    ) -> None:
        """Append a batch (detached), overwriting the oldest rows once full.

        Args:
            features: ``(n, dim)`` embeddings (normalise them first if the loss expects it).
            labels: ``(n,)`` integer labels; required iff the queue was built ``with_labels``.
            check_values: reject NaN/inf features (host sync).

        Raises:
            ValueError: on a wrong shape or dtype, NaN/inf, or labels given to (or missing from)
                a queue built without (with) labels.

        """
        check_embeddings(features, "features", check_finite=check_values)
        if features.shape[1] != self.dim:
            raise ValueError(
                f"features must have shape (n, {self.dim}), got {tuple(features.shape)}"
            )
        n = features.shape[0]
        if self.labels is None:
            if labels is not None:
                raise ValueError("labels given, but the queue was built with with_labels=False")
        else:
            if labels is None:
                raise ValueError("labels are required: the queue was built with with_labels=True")
            check_labels(labels, n)
            if labels.ndim != 1:
                raise ValueError(f"labels must be integer class ids of shape ({n},)")
        if n > self.size:  # only the newest `size` rows survive
            features = features[n - self.size :]
            labels = labels[n - self.size :] if labels is not None else None
            n = self.size
        slots = (self._pointer + torch.arange(n, device=self.features.device)) % self.size
        self.features.index_copy_(0, slots, features.detach().to(self.features))
        if self.labels is not None and labels is not None:
            self.labels.index_copy_(0, slots, labels.detach().to(self.labels))
        self._pointer = (self._pointer + n) % self.size
        self._filled = min(self._filled + n, self.size)
        self.pointer.fill_(self._pointer)
        self.filled.fill_(self._filled)

    def get_features(self) -> Tensor:
        """Return the ``(len(self), dim)`` filled rows (a view of the buffer: do not modify it)."""
        return self.features[: self._filled]

    def get_labels(self) -> Tensor:
        """Return the ``(len(self),)`` labels of the filled rows.

        Raises:
            ValueError: if the queue was built without labels.

        """
        if self.labels is None:
            raise ValueError("this queue stores no labels (built with with_labels=False)")
        return self.labels[: self._filled]

    @torch.no_grad()
    def reset(self) -> None:
        """Empty the queue (contents are zeroed, labels set to -1)."""
        self.features.zero_()
        if self.labels is not None:
            self.labels.fill_(-1)
        self._pointer = self._filled = 0
        self.pointer.zero_()
        self.filled.zero_()

    def extra_repr(self) -> str:
        """Size, dimension and label storage."""
        return f"size={self.size}, dim={self.dim}, with_labels={self.with_labels}"


def _sync_mirrors(module: nn.Module, incompatible_keys: Any) -> None:
    """After ``load_state_dict``, refresh the host mirrors from the restored buffers."""
    assert isinstance(module, MemoryQueue)
    filled, pointer = int(module.filled), int(module.pointer)
    if not (0 <= filled <= module.size and 0 <= pointer < module.size):
        raise ValueError(
            f"state_dict holds filled={filled}, pointer={pointer}, inconsistent with "
            f"size={module.size}"
        )
    module._filled, module._pointer = filled, pointer
