"""torchvision's AlexNet variant (64-192-384-256-256, no LRN, no groups), by name.

It is torchvision's own class, so its ``state_dict`` loads torchvision's published
IMAGENET1K_V1 weights unchanged; this suite never downloads them.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import AlexNet as TorchvisionAlexNet

from model.alexnet import make_activation
from model.registry import register_model


@register_model("alexnet_torchvision")
def alexnet_torchvision(*, num_classes: int = 1000, activation: str = "relu", dropout: float = 0.5) -> nn.Module:
    """torchvision's AlexNet (61,100,840 parameters at 1000 classes), with torchvision's init."""
    net = TorchvisionAlexNet(num_classes=num_classes, dropout=dropout)
    if activation != "relu":
        for seq in (net.features, net.classifier):
            for i, module in enumerate(seq):
                if isinstance(module, nn.ReLU):
                    seq[i] = make_activation(activation)
    return net
