"""A small CNN encoder for 28×28 images, sized for a 2-core CPU, with a projection head."""

from __future__ import annotations

from torch import Tensor, nn


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three stride-2 3×3 conv blocks (BatchNorm, ReLU), then a pooling stage.

    ``pool="avg"``: global average pooling, ``(B, C, 28, 28) → (B, 4·width)``.
    ``pool="fc"``: the ``4×4`` map is flattened and mapped by a linear layer (BatchNorm, ReLU) to
    ``feature_dim`` features, keeping the spatial layout that average pooling discards.
    About 2.2 M multiply-adds per image at ``width=32``.

    Args:
        in_channels: image channels.
        width: channels of the first block (then ×2, ×4).
        pool: ``"avg"`` or ``"fc"``.
        feature_dim: output size with ``pool="fc"``.
        stem: add a stride-1 block of ``width // 2`` channels first (about 3.1 M multiply-adds
            per image at ``width=32`` instead of 2.2 M).
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        pool: str = "avg",
        feature_dim: int = 128,
        stem: bool = False,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if pool not in ("avg", "fc"):
            raise ValueError(f"pool must be 'avg' or 'fc', got {pool!r}")
        layers: list[nn.Module] = []
        if stem:  # a full-resolution block first: (B, w/2, 28, 28)
            layers.append(_block(in_channels, max(1, width // 2), 1))
            in_channels = max(1, width // 2)
        layers += [
            _block(in_channels, width, 2),  # (B, w, 14, 14)
            _block(width, 2 * width, 2),  # (B, 2w, 7, 7)
            _block(2 * width, 4 * width, 2),  # (B, 4w, 4, 4)
        ]
        if pool == "avg":
            self.out_dim = 4 * width
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (B, 4w)
        else:
            self.out_dim = feature_dim
            layers += [
                nn.Flatten(),  # (B, 4w·16)
                nn.Linear(4 * width * 16, feature_dim, bias=False),
                nn.BatchNorm1d(feature_dim),
                nn.ReLU(inplace=True),  # (B, feature_dim)
            ]
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Encode images ``(B, C, H, W)`` into features ``(B, out_dim)``."""
        out: Tensor = self.features(x)
        return out


class ContrastiveModel(nn.Module):
    """Backbone + MLP projection head (SimCLR).

    The ``backbone`` features are what is evaluated; ``forward`` (the projection) feeds the loss.

    Args:
        in_channels: image channels.
        width: backbone width (see :class:`SmallCNN`).
        proj_hidden: hidden units of the projection head (0: a single linear layer).
        proj_dim: output dimension of the projection head.
        pool: backbone pooling (see :class:`SmallCNN`).
        feature_dim: backbone output size with ``pool="fc"``.
        stem: see :class:`SmallCNN`.
        head_bn: BatchNorm in the projection head's hidden layer (as SimCLR's head).
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        proj_hidden: int = 128,
        proj_dim: int = 64,
        pool: str = "avg",
        feature_dim: int = 128,
        stem: bool = False,
        head_bn: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = SmallCNN(in_channels, width, pool, feature_dim, stem)
        d = self.backbone.out_dim
        if proj_hidden > 0:
            norm: nn.Module = nn.BatchNorm1d(proj_hidden) if head_bn else nn.Identity()
            self.head: nn.Module = nn.Sequential(
                nn.Linear(d, proj_hidden),
                norm,
                nn.ReLU(inplace=True),
                nn.Linear(proj_hidden, proj_dim),
            )
        else:
            self.head = nn.Linear(d, proj_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Projected embeddings ``(B, proj_dim)`` of images ``(B, C, H, W)``."""
        out: Tensor = self.head(self.backbone(x))
        return out
