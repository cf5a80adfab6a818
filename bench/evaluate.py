"""Top-1 and top-5 error, on the centre crop or the paper's ten-view average."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from pipelines.base import Loader


@dataclass(frozen=True)
class Errors:
    top1: float  # error rates in [0, 1]
    top5: float
    samples: int


def error_counts(probs: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """How many of the rows get the label wrong at top-1 and at top-5 (top-k capped at the class count)."""
    k = min(5, probs.shape[1])
    topk = probs.topk(k, dim=1).indices
    hit5 = (topk == labels[:, None]).any(dim=1)
    hit1 = topk[:, 0] == labels
    return int((~hit1).sum()), int((~hit5).sum())


@torch.no_grad()
def evaluate(net: nn.Module, loader: Loader, *, progress: bool = False, desc: str = "evaluating") -> Errors:
    """Run ``net`` over every batch of ``loader``. Ten-view batches (N x 10 x 3 x H x W) average the softmax over views."""
    was_training = net.training
    net.eval()
    wrong1 = wrong5 = seen = 0
    try:
        for images, labels in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
            if images.dim() == 5:
                n, views = images.shape[:2]
                probs = net(images.flatten(0, 1)).softmax(dim=1).view(n, views, -1).mean(dim=1)
            else:
                probs = net(images).softmax(dim=1)
            w1, w5 = error_counts(probs, labels)
            wrong1 += w1
            wrong5 += w5
            seen += labels.shape[0]
    finally:
        net.train(was_training)
    if seen == 0:
        return Errors(float("nan"), float("nan"), 0)
    return Errors(wrong1 / seen, wrong5 / seen, seen)
