"""The one data interface of the trainer: rows of a modality with optional labels and pairs.

Every format (Fashion-MNIST, an image folder, a CSV/JSONL of image–text pairs, precomputed
embeddings) is read by one small loader into an :class:`ArrayDataset`: the inputs held in memory
or memory-mapped (``uint8 (N, C, H, W)`` images or ``float32 (N, D)`` vectors), and, when the
format has them, class labels, a text per row and a paired second-modality vector per row. A new
format is one file with a function returning :class:`Splits`; see
:mod:`contrastkit.data.sources` for the list.

Problems with a user's files raise :class:`DataError`, whose message names the file (and the row
for tabular files), so the command line prints one line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset


class DataError(ValueError):
    """A user's data cannot be used; the message names the file (and row) and the problem."""


@dataclass(frozen=True)
class Batch:
    """A training batch gathered from an :class:`ArrayDataset`.

    Attributes:
        inputs: ``float32 (B, C, H, W)`` images in ``[0, 1]`` or ``float32 (B, D)`` vectors.
        labels: ``int64 (B,)``, or None when the data has no labels.
        index: ``int64 (B,)`` positions in the dataset (the address of per-sample state).
        paired: ``float32 (B, D2)`` the rows' second-modality vectors (e.g. text embeddings), or
            None.
        texts: the rows' texts, or None.
    """

    inputs: Tensor
    labels: Tensor | None
    index: Tensor
    paired: Tensor | None
    texts: list[str] | None


@dataclass
class ArrayDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """Rows of one modality, with optional labels, texts and paired vectors.

    Attributes:
        inputs: ``uint8 (N, C, H, W)`` images or ``float32 (N, D)`` vectors (may be a memory map).
        labels: ``int64 (N,)`` class ids, or None.
        source_index: ``int64 (N,)`` positions of the rows in the split they were read from.
        texts: one text per row, or None.
        paired: ``float32 (N, D2)`` one second-modality vector per row, or None.
        class_names: names of the class ids (may be empty).
        skipped: files or rows left out by ``on_bad="skip"`` (``"path: reason"``), for the record.
    """

    inputs: Tensor
    labels: Tensor | None
    source_index: Tensor
    texts: list[str] | None = None
    paired: Tensor | None = None
    class_names: tuple[str, ...] = ()
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.inputs.shape[0]
        for name, value in (("labels", self.labels), ("paired", self.paired)):
            if value is not None and value.shape[0] != n:
                raise DataError(f"{name}: {value.shape[0]} rows for {n} inputs")
        if self.texts is not None and len(self.texts) != n:
            raise DataError(f"texts: {len(self.texts)} rows for {n} inputs")
        if self.inputs.dtype == torch.uint8 and self.inputs.ndim != 4:
            raise DataError(f"images must be (N, C, H, W), got {tuple(self.inputs.shape)}")

    # -- what it holds -----------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        """True for ``uint8`` images, False for float vectors."""
        return self.inputs.dtype == torch.uint8

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one row: ``(C, H, W)`` or ``(D,)``."""
        return tuple(self.inputs.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes (``max label + 1``, or the number of class names); 0 without labels."""
        if self.labels is None or self.labels.numel() == 0:
            return len(self.class_names)
        return max(int(self.labels.max()) + 1, len(self.class_names))

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    # -- access ------------------------------------------------------------------------------
    def _float(self, rows: Tensor) -> Tensor:
        return rows.float().div_(255.0) if rows.dtype == torch.uint8 else rows.float()

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        label = self.labels[i] if self.labels is not None else torch.tensor(-1)
        return self._float(self.inputs[i : i + 1])[0], label, int(i)

    def batch(self, positions: Tensor) -> Batch:
        """Gather the rows at ``positions`` without a DataLoader."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        return Batch(
            inputs=self._float(self.inputs[positions]),
            labels=self.labels[positions] if self.labels is not None else None,
            index=positions,
            paired=self.paired[positions].float() if self.paired is not None else None,
            texts=[self.texts[i] for i in positions.tolist()] if self.texts is not None else None,
        )

    def float_inputs(self) -> Tensor:
        """All inputs as ``float32`` (images scaled to ``[0, 1]``)."""
        return self._float(self.inputs[:])

    def subset(self, positions: Tensor | Sequence[int]) -> ArrayDataset:
        """The rows at ``positions`` (positions in this dataset) as a new dataset."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        return replace(
            self,
            inputs=self.inputs[positions],
            labels=self.labels[positions] if self.labels is not None else None,
            source_index=self.source_index[positions],
            texts=[self.texts[i] for i in positions.tolist()] if self.texts is not None else None,
            paired=self.paired[positions] if self.paired is not None else None,
            skipped=list(self.skipped),
        )

    def with_paired(self, paired: Tensor) -> ArrayDataset:
        """This dataset with ``paired`` (``(N, D2)``) as its second-modality vectors."""
        return replace(self, paired=paired)


class Splits(NamedTuple):
    """What a format loader returns: the training rows and the held-out test rows."""

    train: ArrayDataset
    test: ArrayDataset


def stratified_split(
    labels: Tensor | None, n: int, test_fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """``(train, test)`` positions holding out ``test_fraction`` of each class (or of all rows).

    Raises:
        DataError: ``test_fraction`` outside ``(0, 1)`` or a split that leaves a side empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"data.test_fraction: expected a value in (0, 1), got {test_fraction}")
    g = torch.Generator().manual_seed(seed)
    groups = (
        [torch.arange(n)]
        if labels is None
        else [torch.nonzero(labels == c).flatten() for c in torch.unique(labels).tolist()]
    )
    train, test = [], []
    for rows in groups:
        rows = rows[torch.randperm(rows.numel(), generator=g)]
        k = int(round(test_fraction * rows.numel()))
        k = min(max(k, 1 if rows.numel() > 1 else 0), rows.numel() - 1)
        test.append(rows[:k])
        train.append(rows[k:])
    tr, te = torch.cat(train).sort().values, torch.cat(test).sort().values
    if tr.numel() == 0 or te.numel() == 0:
        raise DataError(
            f"data.test_fraction: {test_fraction} of {n} rows leaves an empty split; "
            "give data.test_path or more data"
        )
    return tr, te
