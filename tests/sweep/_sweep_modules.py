"""Objectives named by import path in the sweep tests: a run killed once mid-training."""

from __future__ import annotations

import os
import signal

import torch
from torch import Tensor, nn

from contrastkit import info_nce


class CrashOnce(nn.Module):
    """InfoNCE; the first process to reach call ``at`` (the one that creates ``marker``) is
    killed with SIGKILL: an interrupted run with a checkpoint behind it."""

    def __init__(self, marker: str, at: int = 3, temperature: float = 0.2) -> None:
        super().__init__()
        self.marker, self.at, self.temperature = marker, at, temperature
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        self.calls += 1
        if int(self.calls) == self.at:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return info_nce(a, b, temperature=self.temperature)
