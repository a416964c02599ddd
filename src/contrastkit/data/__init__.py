"""Real, offline data for training: one interface, several formats, variants, views and text.

:class:`ArrayDataset` is the one interface; :func:`load_data` reads ``data.format``
(Fashion-MNIST, an image folder, CSV/JSONL pairs, precomputed embeddings; see
:mod:`contrastkit.data.sources`).
"""

from contrastkit.data.augment import (
    AugmentConfig,
    VectorAugment,
    ViewGenerator,
    build_augmentation,
    step_seed,
)
from contrastkit.data.dataset import ArrayDataset, Batch, DataError, Splits, stratified_split
from contrastkit.data.fashion_mnist import (
    CLASS_NAMES,
    DataNotFoundError,
    FashionMNIST,
    load_fashion_mnist,
)
from contrastkit.data.sources import FORMATS, load_data
from contrastkit.data.variants import (
    class_split_indices,
    long_tailed_counts,
    long_tailed_indices,
    task_sequence,
)

__all__ = [
    "CLASS_NAMES",
    "FORMATS",
    "ArrayDataset",
    "AugmentConfig",
    "Batch",
    "DataError",
    "DataNotFoundError",
    "FashionMNIST",
    "Splits",
    "VectorAugment",
    "ViewGenerator",
    "build_augmentation",
    "class_split_indices",
    "load_data",
    "load_fashion_mnist",
    "long_tailed_counts",
    "long_tailed_indices",
    "step_seed",
    "stratified_split",
    "task_sequence",
]
