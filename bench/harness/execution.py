"""Where an execution mode enters the harnesses: placing the built network, putting a batch
where the network reads it, waiting for the device. One small function each, so a mode
(``bench/modes/``) plugs in here and every harness follows. The network is built by
``bench.builders.build_model`` and trained by ``bench.train.train_step``.

Only ``single`` (one device) is implemented here; ``bench.harness.dispatch`` refuses the
others until they are.
"""

from __future__ import annotations

import torch
from torch import nn

from pipelines.base import Batch

IMPLEMENTED_MODES = ("single",)


def _check(mode: str) -> None:
    if mode not in IMPLEMENTED_MODES:
        raise ValueError(f"execution mode {mode!r} is not implemented here; implemented: {', '.join(IMPLEMENTED_MODES)}")


def place_model(net: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """The built network, placed for ``mode`` (single: on ``device``)."""
    _check(mode)
    return net.to(device)


def to_device(batch: Batch, mode: str, device: torch.device) -> Batch:
    """``(images, labels)`` where the placed network reads them (a no-op for a batch already there)."""
    _check(mode)
    images, labels = batch
    non_blocking = device.type == "cuda"
    return images.to(device, non_blocking=non_blocking), labels.to(device, non_blocking=non_blocking)


def synchronize(device: torch.device) -> None:
    """Wait until the work queued on ``device`` is done (timing boundaries); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_mode(mode: str, device: torch.device) -> dict:
    """What a record keeps about the mode. ``emulated``: a multi-device layout run on fewer devices."""
    _check(mode)
    return {"name": mode, "device": str(device), "devices": 1, "emulated": False}
