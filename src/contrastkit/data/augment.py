"""Batch augmentation for contrastive views with kornia (torchvision does not work here).

Every call is deterministic given its ``seed``: the pipeline runs inside ``torch.random.fork_rng``
seeded from ``(base_seed, epoch, step, view)``, so the augmentation stream never consumes the
global RNG, and a resumed run draws exactly the views an uninterrupted run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit._optional import require


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the view pipeline (each stage is skipped when its probability is 0).

    The defaults are the training config's defaults (``[augment]`` in
    :data:`contrastkit.train.config.DEFAULTS`).

    Attributes:
        crop_scale: ``(min, max)`` area fraction of the random resized crop.
        flip_p: probability of a horizontal flip.
        affine_p: probability of a random affine (rotation ``degrees``, shift ``translate``).
        degrees: maximum rotation in degrees.
        translate: maximum shift as a fraction of the size.
        noise_p: probability of additive Gaussian noise with std ``noise_std``.
        noise_std: standard deviation of that noise.
        erase_p: probability of random erasing (a rectangle of area fraction ``erase_scale``).
        erase_scale: ``(min, max)`` area fraction of the erased rectangle.
        jitter_p: probability of an intensity jitter (brightness and contrast factors drawn from
            ``[1 - brightness, 1 + brightness]`` and ``[1 - contrast, 1 + contrast]``): the
            grayscale counterpart of SimCLR's colour distortion, which stops two views from being
            matched by their intensity histogram alone.
        brightness: brightness jitter strength.
        contrast: contrast jitter strength.
        blur_p: probability of a 3×3 Gaussian blur with sigma drawn from ``blur_sigma``.
        blur_sigma: ``(min, max)`` sigma of that blur.
    """

    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_p: float = 0.5
    affine_p: float = 0.5
    degrees: float = 10.0
    translate: float = 0.1
    noise_p: float = 0.0
    noise_std: float = 0.05
    erase_p: float = 0.0
    erase_scale: tuple[float, float] = (0.02, 0.15)
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.0)


def build_augmentation(cfg: AugmentConfig, size: int = 28) -> nn.Module:
    """Build the kornia pipeline for ``(B, C, size, size)`` float batches in ``[0, 1]``.

    Raises:
        ModuleNotFoundError: kornia is not installed (``pip install 'contrastkit[train]'``).
    """
    K = require("kornia.augmentation", "train", "build_augmentation")  # noqa: N806
    stages: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=tuple(cfg.crop_scale)),
    ]
    if cfg.flip_p > 0:
        stages.append(K.RandomHorizontalFlip(p=cfg.flip_p))
    if cfg.affine_p > 0:
        stages.append(
            K.RandomAffine(
                degrees=cfg.degrees, translate=(cfg.translate, cfg.translate), p=cfg.affine_p
            )
        )
    if cfg.jitter_p > 0:
        stages.append(K.ColorJiggle(cfg.brightness, cfg.contrast, 0.0, 0.0, p=cfg.jitter_p))
    if cfg.blur_p > 0:
        stages.append(K.RandomGaussianBlur((3, 3), sigma=tuple(cfg.blur_sigma), p=cfg.blur_p))
    if cfg.noise_p > 0:
        stages.append(K.RandomGaussianNoise(std=cfg.noise_std, p=cfg.noise_p))
    if cfg.erase_p > 0:
        stages.append(K.RandomErasing(p=cfg.erase_p, scale=tuple(cfg.erase_scale)))
    # A plain nn.Sequential: kornia's AugmentationSequential costs ~10x more per call here.
    return nn.Sequential(*stages)


class VectorAugment(nn.Module):
    """Views of vectors (precomputed embeddings): Gaussian noise, then feature dropout.

    Noise of ``noise`` times each feature's standard deviation over the batch is added, then each
    feature is zeroed with probability ``dropout`` (SCARF-style corruption for tabular and
    embedding inputs).

    Args:
        noise: noise scale relative to each feature's batch standard deviation (``>= 0``).
        dropout: feature drop probability in ``[0, 1)``.
    """

    def __init__(self, noise: float = 0.1, dropout: float = 0.1) -> None:
        super().__init__()
        if noise < 0 or not 0 <= dropout < 1:
            raise ValueError(f"need noise >= 0 and dropout in [0, 1), got {noise}, {dropout}")
        self.noise, self.dropout = noise, dropout

    def forward(self, x: Tensor) -> Tensor:
        """A corrupted copy of ``x (B, D)``."""
        if self.noise > 0 and x.shape[0] > 1:
            x = x + self.noise * x.std(0, keepdim=True) * torch.randn_like(x)
        if self.dropout > 0:
            x = x * (torch.rand_like(x) >= self.dropout)
        return x


def step_seed(base_seed: int, epoch: int, step: int, view: int) -> int:
    """A 63-bit seed unique to ``(base_seed, epoch, step, view)`` (SplitMix64 mixing)."""
    x = (base_seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x = (x + step * 0x94D049BB133111EB + view * 0x2545F4914F6CDD1D) & (2**64 - 1)
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


class ViewGenerator:
    """Draws augmented views of a batch deterministically from ``(seed, epoch, step, view)``.

    Args:
        augmentation: the pipeline (e.g. from :func:`build_augmentation`).
        seed: the run's base seed.
    """

    def __init__(self, augmentation: nn.Module, seed: int) -> None:
        self.augmentation = augmentation
        self.seed = int(seed)

    def __call__(self, images: Tensor, epoch: int, step: int, num_views: int = 2) -> list[Tensor]:
        """Return ``num_views`` augmented copies of ``images (B, C, H, W)``."""
        views = []
        for v in range(num_views):
            devices = [images.device] if images.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(step_seed(self.seed, epoch, step, v))
                views.append(self.augmentation(images))
        return views
