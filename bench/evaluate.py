"""Top-1 and top-5 error, on the centre crop or the paper's ten-view average."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm

from pipelines.base import Loader

if TYPE_CHECKING:
    from bench.modes.base import Mode


@dataclass(frozen=True)
class Errors:
    """Wrong answers at top-1 and top-5 among ``samples``; rates in [0, 1]."""

    wrong1: int
    wrong5: int
    samples: int

    @property
    def top1(self) -> float:
        return self.wrong1 / self.samples if self.samples else float("nan")

    @property
    def top5(self) -> float:
        return self.wrong5 / self.samples if self.samples else float("nan")

    def summed(self, mode: "Mode") -> "Errors":
        """Totals over all processes of ``mode`` (each evaluated its own shard)."""
        w1, w5, n = mode.sum_across([self.wrong1, self.wrong5, self.samples])
        return Errors(int(w1), int(w5), int(n))


def error_counts(probs: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """How many of the rows get the label wrong at top-1 and at top-5 (top-k capped at the class count)."""
    wrong1, wrong5 = error_tensors(probs, labels)
    return int(wrong1), int(wrong5)


def error_tensors(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``error_counts`` left on the device (no wait for it)."""
    k = min(5, probs.shape[1])
    topk = probs.topk(k, dim=1).indices
    hit5 = (topk == labels[:, None]).any(dim=1)
    hit1 = topk[:, 0] == labels
    return (~hit1).sum(), (~hit5).sum()


@torch.no_grad()
def evaluate(net: nn.Module, loader: Loader, *, progress: bool = False, desc: str = "evaluating") -> Errors:
    """Run ``net`` over every batch of ``loader``. Ten-view batches (N x 10 x 3 x H x W) average the softmax over views.

    The counts are summed on the device and read once, at the end (no wait for the device per batch)."""
    was_training = net.training
    net.eval()
    wrong1 = wrong5 = 0
    seen = 0
    try:
        for images, labels in tqdm(loader, desc=desc, unit="batch", disable=None if progress else True, leave=False):
            if images.dim() == 5:
                n, views = images.shape[:2]
                probs = net(images.flatten(0, 1)).softmax(dim=1).view(n, views, -1).mean(dim=1)
            else:
                probs = net(images).softmax(dim=1)
            w1, w5 = error_tensors(probs, labels)
            wrong1 = wrong1 + w1
            wrong5 = wrong5 + w5
            seen += labels.shape[0]
    finally:
        net.train(was_training)
    return Errors(int(wrong1), int(wrong5), seen)
