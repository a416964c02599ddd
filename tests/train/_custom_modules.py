"""User code named by import path in test configs: an encoder and fault-injecting objectives."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

import contrastkit


def tiny_net(channels: int = 1, width: int = 4) -> nn.Module:
    """A user's encoder with no ``out_dim`` attribute: the trainer must find its width."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),  # (B, 4 * width)
    )


class NaNLossAfter(nn.Module):
    """InfoNCE, but the loss becomes NaN from call number ``after`` on (a diverging run)."""

    def __init__(self, after: int = 3) -> None:
        super().__init__()
        self.after = after
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.loss = contrastkit.InfoNCELoss(temperature=0.2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.calls += 1
        loss: Tensor = self.loss(a, b)
        return loss * float("nan") if int(self.calls) >= self.after else loss


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return torch.full_like(grad, float("inf"))


class InfGradAfter(nn.Module):
    """A finite loss whose gradient is inf from call ``after`` on: only the weights go bad."""

    def __init__(self, after: int = 3) -> None:
        super().__init__()
        self.after = after
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.loss = contrastkit.InfoNCELoss(temperature=0.2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.calls += 1
        if int(self.calls) >= self.after:
            a = _InfGrad.apply(a)  # type: ignore[no-untyped-call]
        loss: Tensor = self.loss(a, b)
        return loss
