"""An execution mode: where the model lives, where batches go, and how numbers are combined
across processes. The harnesses train and measure through this interface only."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch
from torch import nn


class Mode(ABC):
    name: str
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The process that prints, writes records and checkpoints."""
        return self.rank == 0

    @property
    @abstractmethod
    def input_device(self) -> torch.device:
        """Where the pipeline must put batches."""

    @abstractmethod
    def place(self, net: nn.Module) -> nn.Module:
        """The single-device network ``net`` (on the CPU, initialised) made ready to train in this mode."""

    def single_state_dict(self, placed: nn.Module) -> dict[str, torch.Tensor]:
        """The weights as a single-device model's state dict (what checkpoints hold, whatever the mode)."""
        return placed.state_dict()

    def load_single_state_dict(self, placed: nn.Module, state: dict[str, torch.Tensor]) -> None:
        placed.load_state_dict(state)

    def per_process_batch(self, batch_size: int) -> int:
        """This process's share of a global batch."""
        return batch_size

    def sum_across(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over all processes (identity with one process)."""
        return [float(v) for v in values]

    def max_across(self, values: Sequence[float]) -> list[float]:
        """Element-wise maxima over all processes (identity with one process)."""
        return [float(v) for v in values]

    def barrier(self) -> None:
        """Wait for every process (no-op with one)."""

    def agree(self, failed: bool, *, within_s: float | None = None) -> bool:
        """Whether this process or any other failed (this process's own answer, with one). With several,
        the question travels apart from the work's collective calls, so it never pairs with one of
        them; ``PeersSilent`` if not every process answers within ``within_s`` seconds."""
        return failed

    def synchronize(self) -> None:
        """Wait for queued device work, for timing boundaries."""
        for device in self.devices():
            if device.type == "cuda":
                torch.cuda.synchronize(device)

    def devices(self) -> list[torch.device]:
        return [self.input_device]

    def describe(self) -> dict[str, Any]:
        """What the record keeps: mode name, devices, whether it is emulated, processes."""
        return {"name": self.name, "devices": [str(d) for d in self.devices()], "emulated": False, "world_size": self.world_size}

    def close(self) -> None:
        """Release process groups and the like. Idempotent."""


class PeersSilent(RuntimeError):
    """Not every process of the job answered ``Mode.agree`` in time: one is still inside a
    collective call that a failed process will never join."""
