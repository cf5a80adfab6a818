"""A training loader's batches as one endless stream for the throughput phases, with every epoch
start kept out of the timed repeats (issue 13)."""

from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import torch

from bench.harness.timing import run_phase
from pipelines.base import Batch, Loader


class BatchStream:
    """A loader's batches, epoch after epoch, for as long as they are wanted; ``new_epoch()`` abandons the current one.

    ``fit(n)`` (called between timed repeats) makes the next ``n`` batches come from one epoch:
    when fewer are left it starts the next epoch there, untimed, and fetches its first batch, so
    no timed repeat holds an epoch start (a new iterator; DALI's pipeline build, FFCV's
    first-epoch set-up). Those starts are timed apart, in ``epoch_start_seconds``.
    """

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.epoch = -1
        self._batches: Iterator[Batch] | None = None
        self._left = 0  # batches left in the current epoch (by len(loader))
        self._pending: Batch | None = None
        self.epoch_start_seconds: list[float] = []

    def new_epoch(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()
        self._pending = None
        self.epoch += 1
        self.loader.set_epoch(self.epoch)
        self._batches = iter(self.loader)
        self._left = len(self.loader)

    def fit(self, steps: int) -> None:
        """Start the next epoch now, with its first batch fetched, unless ``steps`` batches are left in this one."""
        if self._batches is not None and self._left >= steps:
            return
        start = time.perf_counter()
        self.new_epoch()
        self._pending = next(self._batches)
        self.epoch_start_seconds.append(time.perf_counter() - start)

    def __next__(self) -> Batch:
        if self._pending is not None:
            batch, self._pending = self._pending, None
        else:
            if self._batches is None:
                self.new_epoch()
            try:
                batch = next(self._batches)
            except StopIteration:
                self.new_epoch()
                batch = next(self._batches)
        self._left -= 1
        return batch


def epoch_starts(stream: BatchStream, since: int) -> dict:
    """The epoch starts a phase made between its repeats (kept out of every rate): how many, their seconds."""
    seconds = stream.epoch_start_seconds[since:]
    return {"count": len(seconds), "seconds": seconds}


def loader_only_phase(stream: BatchStream, *, warmup: int, steps: int, repeats: int, device: torch.device,
                      devices: Sequence[torch.device] = (), boundary: Callable[[], None] | None = None,
                      progress: bool = False, desc: str = "loader-only") -> dict:
    """The loader drained, no model: ``run_phase`` over the stream's batches, each repeat inside one
    epoch (``fit``), with the epoch starts between repeats recorded apart (``epoch_starts``).
    Our pipelines and the stock loaders (``bench.harness.baselines``) are measured by this one protocol."""
    steps = min(steps, len(stream.loader))

    def load() -> int:
        return int(next(stream)[1].shape[0])

    starts = len(stream.epoch_start_seconds)
    phase = run_phase(load, warmup=warmup, steps=steps, repeats=repeats, device=device, devices=devices, boundary=boundary,
                      progress=progress, desc=desc, before_repeat=lambda: stream.fit(steps))
    phase["epoch_starts"] = epoch_starts(stream, starts)
    return phase
