"""A user's encoder for `model.encoder = "mynets:gray_convnet"` (see docs/training.md)."""

from torch import nn


def gray_convnet(width: int = 32) -> nn.Module:
    """Two stride-2 convolutions and global average pooling: 28x28x1 images -> (B, 2 * width)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, stride=2, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
