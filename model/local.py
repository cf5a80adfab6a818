"""A locally connected layer: a convolution whose weights are not shared across positions
(cuda-convnet's ``type=local``, "unshared, locally-connected").

Each output position (i, j) has its own ``out_channels x in_channels x k x k`` filter and its
own bias per output channel, as cuda-convnet's ``LocalUnsharedLayerParser`` makes them
(weights ``modules x filterPixels*channels x filters``, biases ``modules x filters``).
Computed with ``unfold``: the input's k x k patches, one column per position, each
multiplied by that position's filter.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LocallyConnected2d(nn.Module):
    """``out[n, o, i, j] = bias[o, i, j] + sum_{c, u, v} weight[i*W+j, o, c*k*k + u*k + v] * x_pad[n, c, i*s + u, j*s + v]``."""

    def __init__(self, in_channels: int, out_channels: int, in_size: int, kernel_size: int, *, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.in_size = in_channels, out_channels, in_size
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.out_size = (in_size + 2 * padding - kernel_size) // stride + 1
        positions = self.out_size * self.out_size
        self.weight = nn.Parameter(torch.empty(positions, out_channels, in_channels * kernel_size * kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels, self.out_size, self.out_size))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # N x C*k*k x positions
        out = torch.einsum("ncl,loc->nol", patches, self.weight)
        return out.reshape(x.shape[0], self.out_channels, self.out_size, self.out_size) + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, out_size={self.out_size}")
