"""The paper's "four-layer CNN" of section 3.3, as cuda-convnet's ``layers-conv-local-11pct.cfg``
(with response normalisation: "11% with") and ``layers-conv-local-13pct.cfg`` (without: "13%
test error without normalization").

The paper counts the hidden weight layers: conv, conv, locally connected, locally connected,
then the softmax layer (fc10). Whether Figure 1's "four-layer convolutional neural network"
is this net the paper does not say, and the figure's network was never published; this is the
published net the paper itself calls "four-layer". Layer for layer (32x32x3 input; every
weight N(0, initW), every bias 0, cuda-convnet's defaults):

====== ================================================== ==========
layer  what                                               output
====== ================================================== ==========
conv1  64 filters 5x5, pad 2; initW 1e-4; act             32x32x64
pool1  max 3x3 stride 2 (cuda-convnet's sizing)           16x16x64
rnorm1 across maps, size 9, scale 0.001, pow 0.75 (11pct) 16x16x64
conv2  64 filters 5x5, pad 2; initW 0.01; act             16x16x64
rnorm2 across maps, as rnorm1 (11pct)                     16x16x64
pool2  max 3x3 stride 2                                   8x8x64
local3 locally connected 3x3, pad 1; 64 filters (11pct),  8x8x64
       32 (13pct); initW 0.04; act
local4 locally connected 3x3, pad 1; 32 filters; 0.04;    8x8x32
       act
fc10   2048 -> classes; initW 0.01                        classes
====== ================================================== ==========

Parameters at 10 classes: 3,672,906 (11pct), 1,901,386 (13pct); locally connected layers
hold most of them (one filter per position). ``cmrnorm`` is
``b = a / (1 + (scale / size) * sum of a^2 over the size maps centred on a's) ** pow`` (the
parser divides scale by size), which is ``nn.LocalResponseNorm(size, scale, pow, k=1)``.
Input: cuda-convnet's, 0-255 pixels minus the training set's mean image (``INPUT_CONVENTION``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from model.alexnet import make_activation
from model.convnet4 import INPUT_CONVENTION, init_normal  # noqa: F401  (INPUT_CONVENTION: the same input as convnet4)
from model.local import LocallyConnected2d
from model.registry import register_model

INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "local3": 0.04, "local4": 0.04, "fc10": 0.01}  # the cfg files' initW


class ConvLocal(nn.Module):
    """cuda-convnet's conv-conv-local-local CIFAR-10 net with ReLU or tanh units; ``normalise``: the 11pct variant."""

    def __init__(self, num_classes: int = 10, *, activation: str = "relu", normalise: bool = True) -> None:
        super().__init__()
        act = lambda: make_activation(activation)  # noqa: E731 - a fresh module per layer
        norm = lambda: nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0) if normalise else nn.Identity()  # noqa: E731
        local3_filters = 64 if normalise else 32
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 64, 5, padding=2),
                act1=act(),
                pool1=nn.MaxPool2d(3, stride=2, ceil_mode=True),
                norm1=norm(),
                conv2=nn.Conv2d(64, 64, 5, padding=2),
                act2=act(),
                norm2=norm(),
                pool2=nn.MaxPool2d(3, stride=2, ceil_mode=True),
                local3=LocallyConnected2d(64, local3_filters, 8, 3, padding=1),
                act3=act(),
                local4=LocallyConnected2d(local3_filters, 32, 8, 3, padding=1),
                act4=act(),
            )
        )
        self.fc10 = nn.Linear(32 * 8 * 8, num_classes)
        init_normal([*self.features.named_children(), ("fc10", self.fc10)], INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc10(torch.flatten(self.features(x), 1))


@register_model("conv_local_11pct")
def conv_local_11pct(*, num_classes: int = 10, activation: str = "relu") -> ConvLocal:
    """cuda-convnet's layers-conv-local-11pct net: conv, conv, local, local, with normalisation (3,672,906 parameters at 10 classes)."""
    return ConvLocal(num_classes, activation=activation, normalise=True)


@register_model("conv_local_13pct")
def conv_local_13pct(*, num_classes: int = 10, activation: str = "relu") -> ConvLocal:
    """cuda-convnet's layers-conv-local-13pct net: the same without normalisation, local3 32 filters (1,901,386 parameters at 10 classes)."""
    return ConvLocal(num_classes, activation=activation, normalise=False)
