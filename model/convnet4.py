"""cuda-convnet's ``layers-18pct.cfg`` CIFAR-10 net ("18% error on CIFAR-10 in 20 minutes"),
an option of the relu-tanh harness (``--model convnet4``), no longer its default.

The paper does not publish the network of Figure 1; it says "a four-layer convolutional
neural network". Section 3.3 uses the same words for cuda-convnet's conv-conv-local-local
net ("a four-layer CNN achieved 13% test error without normalization and 11% with", the
``layers-conv-local-13pct``/``-11pct`` configs), so the paper counts hidden weight layers and
not the softmax layer: by that count this net (three convolutions, then fc10) has three.
That net is ``model/conv_local.py`` and the relu-tanh default; this one is kept because it is
about 2.7x cheaper a step.

Layer for layer (32x32x3 input):

====== =============================================== ==========
layer  what                                            output
====== =============================================== ==========
conv1  32 filters 5x5, stride 1, pad 2; N(0, 1e-4)     32x32x32
pool1  max 3x3 stride 2 (cuda-convnet's sizing), act   16x16x32
norm1  response norm over a 3x3 spatial window         16x16x32
conv2  32 filters 5x5, pad 2; N(0, 0.01), act          16x16x32
pool2  average 3x3 stride 2                            8x8x32
norm2  response norm over a 3x3 spatial window         8x8x32
conv3  64 filters 5x5, pad 2; N(0, 0.01), act          8x8x64
pool3  average 3x3 stride 2                            4x4x64
fc10   1024 -> 10; N(0, 0.01)                          10
====== =============================================== ==========

89,578 parameters; biases start at 0. ``act`` is ReLU or tanh and nothing else changes
between the two, as the figure requires. cuda-convnet applies conv1's nonlinearity after
pool1; max pooling commutes with both (monotonic) nonlinearities, so this is the same function.

The normalisation is cuda-convnet's ``rnorm`` (within each map, not across maps):
``b = a / (1 + (scale / size^2) * sum_{size x size window} a^2) ** pow`` with size 3,
scale 5e-5, pow 0.75 (``layer-params-18pct.cfg``; the parser divides scale by size^2).
The window is centred and clipped at the border.

Input: as cuda-convnet's CIFAR-10 provider gave it, pixel values on the 0-255 scale minus
the training set's mean image (``INPUT_CONVENTION``); the initial weights above assume that scale.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from model.alexnet import make_activation
from model.registry import register_model

INPUT_SIZE = 32
INPUT_CONVENTION = "cuda-convnet"  # 0-255 pixels minus the training set's mean image
INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc10": 0.01}  # layers-18pct.cfg's initW


def init_normal(layers: list[tuple[str, nn.Module]], stds: dict[str, float]) -> None:
    """cuda-convnet's initialisation: each named layer's weights N(0, its ``initW``), its biases 0."""
    for name, module in layers:
        if name in stds:
            nn.init.normal_(module.weight, mean=0.0, std=stds[name])
            nn.init.zeros_(module.bias)


class SpatialResponseNorm(nn.Module):
    """cuda-convnet's ``rnorm``: each activation divided by its squared neighbours' sum in a size x size window of its own map."""

    def __init__(self, size: int = 3, scale: float = 5e-5, power: float = 0.75) -> None:
        super().__init__()
        self.size, self.scale, self.power = size, scale, power

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # average over the window, zeros beyond the border = (sum over the clipped window) / size^2
        mean_square = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return x / (1.0 + self.scale * mean_square) ** self.power

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, power={self.power}"


class ConvNet4(nn.Module):
    """cuda-convnet's layers-18pct CIFAR-10 net with ReLU or tanh units."""

    def __init__(self, num_classes: int = 10, *, activation: str = "relu") -> None:
        super().__init__()
        act = lambda: make_activation(activation)  # noqa: E731 - a fresh module per layer
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 32, 5, padding=2),
                pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
                act1=act(),
                norm1=SpatialResponseNorm(),
                conv2=nn.Conv2d(32, 32, 5, padding=2),
                act2=act(),
                pool2=nn.AvgPool2d(3, stride=2, ceil_mode=True),
                norm2=SpatialResponseNorm(),
                conv3=nn.Conv2d(32, 64, 5, padding=2),
                act3=act(),
                pool3=nn.AvgPool2d(3, stride=2, ceil_mode=True),
            )
        )
        self.fc10 = nn.Linear(64 * 4 * 4, num_classes)
        init_normal([*self.features.named_children(), ("fc10", self.fc10)], INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc10(torch.flatten(self.features(x), 1))


@register_model("convnet4")
def convnet4(*, num_classes: int = 10, activation: str = "relu") -> ConvNet4:
    """cuda-convnet's layers-18pct CIFAR-10 net: three convolutions and fc10 (89,578 parameters at 10 classes)."""
    return ConvNet4(num_classes, activation=activation)
