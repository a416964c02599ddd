"""Encoders: the shipped small CNN (images), an MLP (vectors), or a user's module by import path.

``model.encoder`` selects one: ``""`` picks ``small-cnn`` for images and ``mlp`` for vectors;
``"package.module:function"`` calls ``function(**model.encoder_kwargs)`` (a class works too), which
must return an ``nn.Module`` mapping a batch of inputs to features ``(B, F)``. ``F`` is read from
its ``out_dim`` attribute, or found by running it once on two zero inputs.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.train.config import ConfigError


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three stride-2 3×3 conv blocks (BatchNorm, ReLU), then a pooling stage.

    ``pool="avg"``: global average pooling, ``(B, C, H, W) → (B, 4·width)``.
    ``pool="fc"``: the ``⌈H/8⌉×⌈W/8⌉`` map (``4×4`` for 28×28) is flattened and mapped by a
    linear layer (BatchNorm, ReLU) to ``feature_dim`` features, keeping the spatial layout that
    average pooling discards. About 2.2 M multiply-adds per 28×28 image at ``width=32``.

    Args:
        in_channels: image channels.
        width: channels of the first block (then ×2, ×4).
        pool: ``"avg"`` or ``"fc"``.
        feature_dim: output size with ``pool="fc"``.
        stem: add a stride-1 block of ``width // 2`` channels first (about 3.1 M multiply-adds
            per image at ``width=32`` instead of 2.2 M).
        input_size: ``(H, W)`` of the images (sets the ``pool="fc"`` layer's input size).
    """

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        pool: str = "avg",
        feature_dim: int = 128,
        stem: bool = False,
        input_size: tuple[int, int] = (28, 28),
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
            cells = math.prod(math.ceil(side / 8) for side in input_size)  # 16 for 28×28
            layers += [
                nn.Flatten(),  # (B, 4w·cells)
                nn.Linear(4 * width * cells, feature_dim, bias=False),
                nn.BatchNorm1d(feature_dim),
                nn.ReLU(inplace=True),  # (B, feature_dim)
            ]
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Encode images ``(B, C, H, W)`` into features ``(B, out_dim)``."""
        out: Tensor = self.features(x)
        return out


class MLPEncoder(nn.Module):
    """An MLP for vector inputs: ``Linear → BatchNorm → ReLU`` per hidden layer, then ``Linear``.

    Args:
        in_dim: input size ``D``.
        hidden: hidden layer sizes.
        out_dim: feature size.
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (512,), out_dim: int = 128) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"sizes must be >= 1, got in={in_dim}, hidden={hidden}, out={out_dim}")
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(B, out_dim)`` of vectors ``(B, D)``."""
        out: Tensor = self.net(x)
        return out


def projection_head(in_dim: int, hidden: int, out_dim: int, batch_norm: bool = False) -> nn.Module:
    """SimCLR's MLP projection head (``hidden = 0``: a single linear layer)."""
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"model.encoder: cannot import {spec!r}: {err}") from err


def feature_dim(encoder: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The encoder's feature size: its ``out_dim``, or the width of its output on zero inputs."""
    out_dim = getattr(encoder, "out_dim", None)
    if isinstance(out_dim, int):
        return out_dim
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            out = encoder(torch.zeros(2, *input_shape))
    except Exception as err:
        raise ConfigError(
            f"model.encoder: running it on inputs of shape {(2, *input_shape)} failed: {err}"
        ) from err
    finally:
        encoder.train(was_training)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"model.encoder: expected features (B, F) from the encoder, got {got}")
    return int(out.shape[1])


def build_encoder(m: Mapping[str, Any], input_shape: tuple[int, ...]) -> nn.Module:
    """The encoder that ``[model]`` describes for rows of ``input_shape`` (``(C,H,W)``/``(D,)``).

    Raises:
        ConfigError: an encoder that does not fit the data, or a user encoder that cannot be
            imported, built or run (naming ``model.encoder``).
    """
    name = m["encoder"] or ("small-cnn" if len(input_shape) == 3 else "mlp")
    kwargs = dict(m["encoder_kwargs"])
    if name == "small-cnn":
        if len(input_shape) != 3:
            raise ConfigError(f"model.encoder: small-cnn reads images, the data has {input_shape}")
        return SmallCNN(
            input_shape[0],
            m["width"],
            m["pool"],
            m["feature_dim"],
            m["stem"],
            (input_shape[1], input_shape[2]),
            **kwargs,
        )
    if name == "mlp":
        if len(input_shape) != 1:
            raise ConfigError(f"model.encoder: mlp reads vectors, the data has {input_shape}")
        return MLPEncoder(input_shape[0], m["mlp_hidden"], m["feature_dim"], **kwargs)
    if ":" not in name:
        raise ConfigError(
            f"model.encoder: expected 'small-cnn', 'mlp' or 'package.module:function', got {name!r}"
        )
    factory = _import(name)
    try:
        encoder = factory(**kwargs)
    except Exception as err:
        raise ConfigError(f"model.encoder: {name}(**{kwargs}) failed: {err}") from err
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"model.encoder: {name} returned {type(encoder).__name__}, not a Module")
    return encoder
