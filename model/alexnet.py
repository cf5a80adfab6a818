"""AlexNet as in Krizhevsky, Sutskever & Hinton (NIPS 2012), on one device.

The paper's two towers are expressed as grouped convolutions (groups=2 on conv2, conv4 and
conv5) and per-tower LRN, which is the same function as the two-GPU network: channels
``[0, C/2)`` are tower A's kernel maps and ``[C/2, C)`` tower B's.

Input is 227x227 by default (the size the feature maps 55, 27, 13, 13, 13, 6 need);
``input_size=224`` pads conv1 by 2 to reach the same maps from the paper's stated 224.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from model.dropout import OutputDropout
from model.lrn import LocalResponseNorm
from model.registry import register_model

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
CONV1_PADDING = {227: 0, 224: 2}
INITS = ("paper", "caffe", "he")


def make_activation(name: str) -> nn.Module:
    try:
        cls = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from: {', '.join(ACTIVATIONS)}") from None
    return cls(inplace=True) if cls is nn.ReLU else cls()


class AlexNet(nn.Module):
    """The paper's AlexNet: 5 conv layers (two towers as groups), LRN, overlapping pooling, 3 FC layers.

    Dropout (p=0.5) drops the *outputs* of fc6 and fc7 (after their ReLU), as the paper's section 4.2,
    Caffe's bvlc_alexnet (fc6 -> relu6 -> drop6 -> fc7 -> relu7 -> drop7 -> fc8) and cuda-convnet do;
    pool5's features reach fc6 untouched. (torchvision's layout, dropout before fc6 and fc7, is
    ``alexnet_torchvision``'s.)
    """

    # Layers whose bias the paper initialises to 1 (the rest to 0).
    BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        activation: str = "relu",
        lrn: str = "authors",
        input_size: int = 227,
        dropout: float = 0.5,
        init: str = "paper",
    ) -> None:
        super().__init__()
        if input_size not in CONV1_PADDING:
            raise ValueError(f"input_size must be 227 or 224, not {input_size}")
        self.input_size = input_size
        act = lambda: make_activation(activation)  # noqa: E731 - a fresh module per layer
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 96, 11, stride=4, padding=CONV1_PADDING[input_size]),
                act1=act(),
                norm1=LocalResponseNorm(lrn, groups=2),
                pool1=nn.MaxPool2d(3, stride=2),
                conv2=nn.Conv2d(96, 256, 5, padding=2, groups=2),
                act2=act(),
                norm2=LocalResponseNorm(lrn, groups=2),
                pool2=nn.MaxPool2d(3, stride=2),
                conv3=nn.Conv2d(256, 384, 3, padding=1),
                act3=act(),
                conv4=nn.Conv2d(384, 384, 3, padding=1, groups=2),
                act4=act(),
                conv5=nn.Conv2d(384, 256, 3, padding=1, groups=2),
                act5=act(),
                pool5=nn.MaxPool2d(3, stride=2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(256 * 6 * 6, 4096),
                act6=act(),
                drop6=OutputDropout(dropout),
                fc7=nn.Linear(4096, 4096),
                act7=act(),
                drop7=OutputDropout(dropout),
                fc8=nn.Linear(4096, num_classes),
            )
        )
        initialise(self, init, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def initialise(net: nn.Module, scheme: str = "paper", *, activation: str = "relu") -> None:
    """Set the weights and biases of every conv and linear layer.

    ``"paper"``: weights N(0, 0.01); bias 1 on conv2, conv4, conv5, fc6, fc7, else 0.
    ``"caffe"``: the bvlc_alexnet reference's variant (bias 0.1 where the paper has 1, std
    0.005 for fc6/fc7), chosen by its authors because bias 1 gave them a flat loss.
    ``"he"``: not the paper's: He et al. (2015) normal init for the activation, biases 0,
    fc8 N(0, 0.01). The paper's N(0, 0.01) keeps the loss flat for thousands of steps, far
    beyond a CPU budget; this one leaves the flat start within a few dozen steps.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose from: {', '.join(INITS)}")
    for name, module in net.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        layer = name.rsplit(".", 1)[-1]
        if scheme == "he" and layer != "fc8":
            nn.init.kaiming_normal_(module.weight, nonlinearity=activation)
            nn.init.zeros_(module.bias)
            continue
        std = 0.005 if scheme == "caffe" and layer in ("fc6", "fc7") else 0.01
        bias = 0.0
        if scheme != "he" and layer in AlexNet.BIAS_ONE:
            bias = 1.0 if scheme == "paper" else 0.1
        nn.init.normal_(module.weight, mean=0.0, std=std)
        nn.init.constant_(module.bias, bias)


@register_model("alexnet")
def alexnet(*, num_classes: int = 1000, **kwargs) -> AlexNet:
    """The paper's AlexNet (60,965,224 parameters at 1000 classes)."""
    return AlexNet(num_classes, **kwargs)
