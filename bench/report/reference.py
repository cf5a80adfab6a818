"""Published figures to compare with, each with its source. Error rates are fractions (as in
the records); the report prints them as percent.

What each figure is: its dataset and split, the test views, how many networks. None of them
comes from this benchmark's hardware, and none is a figure on the embedded data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PAPER = "Krizhevsky, Sutskever & Hinton, NIPS 2012"


@dataclass(frozen=True)
class Published:
    """One published top-1/top-5 error pair."""

    source: str
    network: str
    dataset: str
    views: str  # "centre crop" or "10 views" (4 corners + centre, and their reflections)
    top1_err: float
    top5_err: float
    where: str  # where the figure is printed


ACCURACY: tuple[Published, ...] = (
    Published(PAPER, "1 CNN", "ILSVRC-2010 test", "10 views", 0.375, 0.170, "Table 1"),
    Published(PAPER, "1 CNN", "ILSVRC-2010 test", "centre crop", 0.390, 0.183, "section 4.1 (without the 10-view average)"),
    Published(PAPER, "1 CNN", "ILSVRC-2012 val", "10 views", 0.407, 0.182, "Table 2"),
    Published(PAPER, "5 CNNs", "ILSVRC-2012 val", "10 views", 0.381, 0.164, "Table 2"),
    Published("Caffe bvlc_alexnet", "1 CNN (Caffe's reference training)", "ILSVRC-2012 val", "centre crop", 0.429, 0.198,
              "github.com/BVLC/caffe/tree/master/models/bvlc_alexnet (accuracy 57.1 / 80.2)"),
    Published("torchvision AlexNet_Weights.IMAGENET1K_V1", "1 CNN (torchvision's variant, 61,100,840 parameters)", "ILSVRC-2012 val",
              "centre crop (resize 256, crop 224)", 0.43478, 0.20934, "torchvision/models/alexnet.py meta _metrics: acc@1 56.522, acc@5 79.066"),
)

# Figure 1: a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster
# (in iterations) than the same network with tanh neurons.
RELU_TANH_RATIO = 6.0
RELU_TANH_TARGET = 0.25
RELU_TANH_SOURCE = f"{PAPER}, Figure 1: 25% training error on CIFAR-10 about six times faster in iterations with ReLU than with tanh"

# What the authors' figures were measured on (section 3.2, 5).
PAPER_HARDWARE = "two NVIDIA GTX 580 3GB GPUs (the paper's); 5-6 days for 90 epochs"


def accuracy_frame() -> pd.DataFrame:
    """The published figures as a table (error rates as fractions)."""
    return pd.DataFrame([vars(p) for p in ACCURACY])
