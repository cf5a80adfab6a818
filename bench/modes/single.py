"""One device: the model and the batches on it."""

from __future__ import annotations

import torch
from torch import nn

from bench.modes.base import Mode


class SingleDevice(Mode):
    name = "single"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @property
    def input_device(self) -> torch.device:
        return self.device

    def place(self, net: nn.Module) -> nn.Module:
        return net.to(self.device)
