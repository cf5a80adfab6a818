"""Dropout on a layer's outputs with a mask drawn in one place, so that the two-tower network
can take each tower's half of the very mask the one-device network draws.

The paper (section 4.2) sets "to zero the output of each hidden neuron with probability 0.5"
in the first two fully connected layers; a dropped neuron is dropped for every layer that
reads it. Here the kept units are scaled by 1/(1-p) during training (torch's inverted
dropout), which is the paper's "multiply their outputs by 0.5" at test time moved to training.
"""

from __future__ import annotations

import torch
from torch import nn


def draw_mask(batch: int, units: int, p: float, *, device: torch.device) -> torch.Tensor:
    """A ``batch x units`` boolean keep-mask from torch's generator on ``device``: False with probability ``p``.

    Boolean, so that it is a quarter of a float mask to copy between devices and keeps the
    activations' dtype (under autocast too) when applied.
    """
    return torch.rand(batch, units, device=device) >= p


def apply_mask(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """``x`` with the dropped units zeroed and the kept ones scaled by 1/(1-p)."""
    return x.mul(keep).mul_(1.0 / (1.0 - p))


class OutputDropout(nn.Module):
    """Dropout whose mask comes from ``draw_mask`` (or is given): one draw per call, ``units`` wide."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {p}")
        self.p = p

    @property
    def active(self) -> bool:
        return self.training and self.p > 0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not self.active:
            return x
        if mask is None:
            mask = draw_mask(x.shape[0], x.shape[1], self.p, device=x.device)
        return apply_mask(x, mask, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
