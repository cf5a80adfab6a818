"""The paper's two-GPU AlexNet (section 3.2, cuda-convnet2's ``layers-imagenet-2gpu-model.cfg``).

Each tower holds half the kernels of every layer (48, 128, 192, 192, 128; fc6 and fc7
2048 each). conv2, conv4 and conv5 read only their own tower; conv3, fc6, fc7 and fc8 read
both, and those are the only places where activations cross between devices. fc8 (1000
outputs) sits with tower A and reads both towers' fc7.

The network computes the same function as ``model.alexnet.AlexNet`` (grouped convolutions,
per-tower LRN): tower A is channels ``[0, C/2)`` of every layer and tower B ``[C/2, C)``.
``split_state_dict`` and ``merge_state_dict`` convert weights between the two.

Dropout: each tower drops its own fc6 and fc7 outputs before they are exchanged, so a dropped
neuron is dropped for every layer that reads it, on both devices (the paper, section 4.2). The
mask is drawn once, 4,096 units wide, on tower A's device in the order the one-device network
draws it (``model.dropout.draw_mask``: fc6's, then fc7's), and each tower takes its half:
with one seed, training-mode logits and gradients equal ``model.alexnet.AlexNet``'s.

Concurrency: the forward pass enqueues each layer's two halves back to back, one per device.
CUDA kernels launch asynchronously, so with the towers on two GPUs both compute at once. A
device-to-device copy is a two-way barrier in torch (the copy runs on the source device's
current stream after everything queued there, and each side's stream waits for the other's
work queued so far), so every copy that does not depend on a tower's result (the input batch
for each device, tower B's half of the dropout masks) is issued before any tower's work; the
only copies issued later are the exchanges of conv2's, pool5's, fc6's and fc7's outputs, which
both towers need anyway. Backward: autograd runs each device's part on its own worker thread
and issues each exchange's gradient copy (the backward of ``Tensor.to``) when that gradient is
ready, so the towers' backward passes overlap in the same way. With both towers on one device
(emulation) the halves run one after the other.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from model.alexnet import CONV1_PADDING, initialise, make_activation
from model.dropout import OutputDropout, apply_mask, draw_mask
from model.lrn import LocalResponseNorm

# (single-model layer, tower layer, how its weights split): "out" halves the output
# rows; a grouped conv's halves are simply the two groups.
SPLIT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


class Tower(nn.Module):
    """One GPU's half of every layer but fc8."""

    def __init__(self, *, activation: str, lrn: str, input_size: int) -> None:
        super().__init__()
        act = lambda: make_activation(activation)  # noqa: E731
        self.stage1 = nn.Sequential(  # own input only
            OrderedDict(
                conv1=nn.Conv2d(3, 48, 11, stride=4, padding=CONV1_PADDING[input_size]),
                act1=act(),
                norm1=LocalResponseNorm(lrn),
                pool1=nn.MaxPool2d(3, stride=2),
                conv2=nn.Conv2d(48, 128, 5, padding=2),
                act2=act(),
                norm2=LocalResponseNorm(lrn),
                pool2=nn.MaxPool2d(3, stride=2),
            )
        )
        self.stage2 = nn.Sequential(  # reads both towers' conv2 maps
            OrderedDict(
                conv3=nn.Conv2d(256, 192, 3, padding=1),
                act3=act(),
                conv4=nn.Conv2d(192, 192, 3, padding=1),
                act4=act(),
                conv5=nn.Conv2d(192, 128, 3, padding=1),
                act5=act(),
                pool5=nn.MaxPool2d(3, stride=2),
            )
        )
        self.fc6 = nn.Sequential(OrderedDict(fc6=nn.Linear(256 * 6 * 6, 2048), act6=act()))  # dropout: TwoTowerAlexNet's
        self.fc7 = nn.Sequential(OrderedDict(fc7=nn.Linear(4096, 2048), act7=act()))


class TwoTowerAlexNet(nn.Module):
    """AlexNet split over two devices as in the paper; ``devices`` may name the same device twice (emulation)."""

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        devices: tuple[str | torch.device, str | torch.device] = ("cpu", "cpu"),
        activation: str = "relu",
        lrn: str = "authors",
        input_size: int = 227,
        dropout: float = 0.5,
        init: str = "paper",
    ) -> None:
        super().__init__()
        self.devices = (torch.device(devices[0]), torch.device(devices[1]))
        kw = dict(activation=activation, lrn=lrn, input_size=input_size)
        self.tower_a = Tower(**kw)
        self.tower_b = Tower(**kw)
        self.drop6 = OutputDropout(dropout)  # on fc6's and fc7's outputs, one mask for both towers
        self.drop7 = OutputDropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        initialise(self, init, activation=activation)
        self.tower_a.to(self.devices[0])
        self.tower_b.to(self.devices[1])
        self.fc8.to(self.devices[0])

    @property
    def emulated(self) -> bool:
        return self.devices[0] == self.devices[1]

    def _both(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each tower's input made of both towers' outputs: the cross-device step."""
        da, db = self.devices
        return (
            torch.cat([a, b.to(da, non_blocking=True)], dim=1),
            torch.cat([a.to(db, non_blocking=True), b], dim=1),
        )

    def _masks(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """fc6's and fc7's dropout masks as (tower A's half on A's device, tower B's on B's); None when off."""
        da, db = self.devices
        masks: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for drop in (self.drop6, self.drop7):
            if not drop.active:
                masks.append(None)
                continue
            full = draw_mask(batch, 4096, drop.p, device=da)  # as AlexNet draws it: 4,096 units, fc6's first
            masks.append((full[:, :2048], full[:, 2048:].to(db, non_blocking=True)))
        return masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        da, db = self.devices
        # Every copy that needs no tower's result is issued first, so neither tower waits for the other's work.
        xa, xb = x.to(da, non_blocking=True), x.to(db, non_blocking=True)
        mask6, mask7 = self._masks(x.shape[0])
        a, b = self.tower_a.stage1(xa), self.tower_b.stage1(xb)
        a, b = self._both(a, b)
        a, b = self.tower_a.stage2(a), self.tower_b.stage2(b)
        a, b = self._both(torch.flatten(a, 1), torch.flatten(b, 1))
        a, b = self.tower_a.fc6(a), self.tower_b.fc6(b)
        if mask6 is not None:
            a, b = apply_mask(a, mask6[0], self.drop6.p), apply_mask(b, mask6[1], self.drop6.p)
        a, b = self._both(a, b)
        a, b = self.tower_a.fc7(a), self.tower_b.fc7(b)
        if mask7 is not None:
            a, b = apply_mask(a, mask7[0], self.drop7.p), apply_mask(b, mask7[1], self.drop7.p)
        return self.fc8(torch.cat([a, b.to(da, non_blocking=True)], dim=1))


def _tower_key(layer: str) -> str:
    stage = "stage1" if layer in ("conv1", "conv2") else "stage2" if layer in ("conv3", "conv4", "conv5") else layer
    return f"{stage}.{layer}"


def _single_key(layer: str) -> str:
    return f"{'features' if layer.startswith('conv') else 'classifier'}.{layer}"


def split_state_dict(single: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``model.alexnet.AlexNet`` state dict as a ``TwoTowerAlexNet`` one (tower A: the first half of every layer)."""
    out: dict[str, torch.Tensor] = {}
    for layer in SPLIT_LAYERS:
        for param in ("weight", "bias"):
            full = single[f"{_single_key(layer)}.{param}"]
            half = full.shape[0] // 2
            out[f"tower_a.{_tower_key(layer)}.{param}"] = full[:half].clone()
            out[f"tower_b.{_tower_key(layer)}.{param}"] = full[half:].clone()
    for param in ("weight", "bias"):
        out[f"fc8.{param}"] = single[f"classifier.fc8.{param}"].clone()
    return out


def merge_state_dict(towers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``TwoTowerAlexNet`` state dict as a ``model.alexnet.AlexNet`` one, on the CPU."""
    out: dict[str, torch.Tensor] = {}
    for layer in SPLIT_LAYERS:
        for param in ("weight", "bias"):
            a = towers[f"tower_a.{_tower_key(layer)}.{param}"].cpu()
            b = towers[f"tower_b.{_tower_key(layer)}.{param}"].cpu()
            out[f"{_single_key(layer)}.{param}"] = torch.cat([a, b], dim=0)
    for param in ("weight", "bias"):
        out[f"classifier.fc8.{param}"] = towers[f"fc8.{param}"].cpu().clone()
    return out
