"""Local response normalisation in the two conventions found in the literature.

The paper (section 3.3) writes

    b[i] = a[i] / (k + alpha * sum_{j in window(i)} a[j]^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75. The authors' own code (cuda-convnet), Caffe and
``torch.nn.LocalResponseNorm`` divide alpha by the window size n:

    b[i] = a[i] / (k + (alpha / n) * sum_{j in window(i)} a[j]^2) ** beta

The published hyper-parameters were used with the second form, so ``"authors"`` is the
default here; ``"paper"`` evaluates the formula as printed (equivalent to alpha = 5e-4 in
the divided form).

In the two-GPU network each GPU normalises over its own kernel maps only: the window never
crosses from one tower's maps to the other's. ``groups=2`` reproduces that on one device.
"""

from __future__ import annotations

import torch
from torch import nn

LRN_CONVENTIONS = ("authors", "paper")


class LocalResponseNorm(nn.Module):
    """Cross-channel LRN with the paper's constants, in either convention, per channel group."""

    def __init__(
        self,
        convention: str = "authors",
        *,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        if convention not in LRN_CONVENTIONS:
            raise ValueError(f"unknown LRN convention {convention!r}; choose from: {', '.join(LRN_CONVENTIONS)}")
        self.convention = convention
        self.groups = groups
        # torch's LocalResponseNorm divides alpha by size; undo that for the literal formula.
        torch_alpha = alpha if convention == "authors" else alpha * size
        self.norm = nn.LocalResponseNorm(size, alpha=torch_alpha, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return self.norm(x)
        return torch.cat([self.norm(part) for part in x.chunk(self.groups, dim=1)], dim=1)

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}, groups={self.groups}"
