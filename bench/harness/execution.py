"""Where an execution mode (``bench.modes``) enters the harnesses' inner loops: putting a batch
where the placed network reads it, and waiting for the devices at timing boundaries. The
network is built by ``bench.builders.build_model``, placed by ``Mode.place`` and trained by
``bench.train.train_step``.
"""

from __future__ import annotations

from typing import Callable

import torch

from bench.modes import Mode
from pipelines.base import Batch


def to_device(batch: Batch, mode: Mode) -> Batch:
    """``(images, labels)`` where the placed network reads them (a no-op for a batch already there)."""
    images, labels = batch
    device = mode.input_device
    non_blocking = device.type == "cuda"
    return images.to(device, non_blocking=non_blocking), labels.to(device, non_blocking=non_blocking)


def synchronize(device: torch.device) -> None:
    """Wait until the work queued on ``device`` is done (timing boundaries); nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_boundary(mode: Mode) -> Callable[[], None]:
    """What to do at both ends of a timed repeat: every device of the mode idle, and with several
    processes, all of them at the same point (so one repeat's time is the job's, not one rank's)."""

    def boundary() -> None:
        mode.synchronize()
        if mode.world_size > 1:
            mode.barrier()

    return boundary
