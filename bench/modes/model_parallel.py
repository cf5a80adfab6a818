"""The paper's model parallelism: two towers on two devices (``model.two_tower``).

With two or more GPUs the towers go on ``cuda:0`` and ``cuda:1`` (or the devices given);
with fewer, both share one device: the run is then *emulated* (the same computation and
transfers' shape, but no second device), and says so everywhere it is reported.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.errors import UserError
from bench.modes.base import Mode
from bench.train import normalise_device
from model.alexnet import AlexNet
from model.two_tower import TwoTowerAlexNet, merge_state_dict, split_state_dict


def tower_devices(spec: str, default: torch.device) -> tuple[torch.device, torch.device]:
    """``"cuda:0,cuda:1"`` (or empty: two GPUs if there are two, else ``default`` twice)."""
    if not spec:
        if default.type == "cuda" and torch.cuda.device_count() >= 2:
            return torch.device("cuda:0"), torch.device("cuda:1")
        return normalise_device(default), normalise_device(default)
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 2:
        raise UserError(f"--mp-devices {spec!r}: give two devices separated by a comma, e.g. cuda:0,cuda:1")
    devices = []
    for p in parts:
        try:
            d = normalise_device(torch.device(p))
        except RuntimeError:
            raise UserError(f"--mp-devices: {p!r} is not a device") from None
        if d.type == "cuda" and (not torch.cuda.is_available() or d.index >= torch.cuda.device_count()):
            raise UserError(f"--mp-devices: {p} is not visible on this machine ({torch.cuda.device_count()} GPU(s))")
        devices.append(d)
    return devices[0], devices[1]


class ModelParallel(Mode):
    name = "model-parallel"

    def __init__(self, devices: tuple[torch.device, torch.device]) -> None:
        self.tower_devices = tuple(normalise_device(d) for d in devices)

    @property
    def emulated(self) -> bool:
        return self.tower_devices[0] == self.tower_devices[1]

    @property
    def input_device(self) -> torch.device:
        return self.tower_devices[0]

    def devices(self) -> list[torch.device]:
        return list(dict.fromkeys(self.tower_devices))

    def place(self, net: nn.Module) -> nn.Module:
        if not isinstance(net, AlexNet):
            raise UserError("--mode model-parallel splits the paper's AlexNet into its two towers: use --model alexnet")
        towers = TwoTowerAlexNet(
            net.classifier.fc8.out_features,
            devices=self.tower_devices,
            activation="tanh" if isinstance(net.features.act1, nn.Tanh) else "relu",
            lrn=net.features.norm1.convention,
            input_size=net.input_size,
            dropout=net.classifier.drop6.p,
        )
        self.load_single_state_dict(towers, net.state_dict())
        return towers

    def single_state_dict(self, placed: nn.Module) -> dict[str, torch.Tensor]:
        return merge_state_dict(placed.state_dict())

    def load_single_state_dict(self, placed: nn.Module, state: dict[str, torch.Tensor]) -> None:
        placed.load_state_dict(split_state_dict(state))

    def describe(self) -> dict:
        return {
            **super().describe(),
            "towers": [str(d) for d in self.tower_devices],
            "emulated": self.emulated,
            "note": "both towers share one device: emulated, not a two-GPU figure" if self.emulated else "",
        }
