"""Where an execution mode (``bench.modes``) enters the harnesses' inner loops: putting a batch
where the placed network reads it, and waiting for the devices at timing boundaries. The
network is built by ``bench.builders.build_model``, placed by ``Mode.place`` and trained by
``bench.train.train_step``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from bench.modes import Mode
from bench.modes.base import PeersSilent
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


class PeerFailed(RuntimeError):
    """Another process of the job failed at a point all of them pass together; this one stops with it."""


class JobMustEnd(RuntimeError):
    """The processes could not agree: one failed while another still waits in a collective call
    that the failed one will never join. This process ends, and the launcher stops the others
    (torchrun's agent, within a tenth of a second) instead of letting them wait out the timeout."""


@contextmanager
def together(mode: Mode, what: str, *, within_s: float | None = None) -> Iterator[None]:
    """Run the block in every process, then agree on how it went: if it raised in any process, it
    raises in all (the others ``PeerFailed``), so the processes' next collective calls still pair up
    (e.g. rank 0 alone measures the decode ceiling: if that fails, every rank skips the point).
    ``JobMustEnd`` when not every process answers within ``within_s`` seconds (``None``: the job's
    timeout), which is how a process learns that the others are stuck where it failed.
    With one process it is the block alone."""
    error: BaseException | None = None
    try:
        yield
    except Exception as err:  # noqa: BLE001 - re-raised below, after the others are told
        error = err
    try:
        failed = mode.agree(error is not None, within_s=within_s)
    except PeersSilent as silent:
        here = f"{type(error).__name__}: {error}" if error is not None else "this process did not fail"
        raise JobMustEnd(f"{what}: {here}; {silent}, so the job ends") from error
    if error is not None:
        raise error
    if failed:
        raise PeerFailed(f"{what}: another process of the job failed (its error is in rank 0's record or output)")
