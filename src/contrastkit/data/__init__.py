"""Real, offline data for training: Fashion-MNIST, its variants, augmentation and text prompts."""

from contrastkit.data.augment import AugmentConfig, ViewGenerator, build_augmentation, step_seed
from contrastkit.data.fashion_mnist import (
    CLASS_NAMES,
    DataNotFoundError,
    FashionMNIST,
    load_fashion_mnist,
)
from contrastkit.data.variants import (
    class_split_indices,
    long_tailed_counts,
    long_tailed_indices,
    task_sequence,
)

__all__ = [
    "CLASS_NAMES",
    "AugmentConfig",
    "DataNotFoundError",
    "FashionMNIST",
    "ViewGenerator",
    "build_augmentation",
    "class_split_indices",
    "load_fashion_mnist",
    "long_tailed_counts",
    "long_tailed_indices",
    "step_seed",
    "task_sequence",
]
