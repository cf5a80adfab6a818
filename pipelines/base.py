"""The pipeline contract: every input pipeline takes the same samples and the same spec and
yields the same thing, ``(images float N x 3 x H x W normalised, labels int64 N)`` on the
target device (``N x 10 x 3 x H x W`` for the ten-crop evaluation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import torch

from pipelines.spec import AugmentSpec


@dataclass(frozen=True)
class Split:
    """The samples of one split, in the manifest's order: absolute paths and class indices."""

    name: str
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    num_classes: int
    fingerprint: str  # the manifest's: changes whenever the samples do

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError("paths and labels differ in length")

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class PipelineOptions:
    """How a pipeline runs (the spec says *what* it does to an image)."""

    batch_size: int = 128
    workers: int = 2
    device: str = "cpu"
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    drop_last: bool = True  # for training loaders; evaluation always sees every sample once
    cache_dir: str = ""  # where a pipeline may keep derived files (e.g. FFCV's .beton)
    extra: dict[str, Any] = field(default_factory=dict)  # pipeline-specific options

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be at least 0, not {self.workers}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")


Batch = tuple[torch.Tensor, torch.Tensor]


class Loader(ABC):
    """An epoch-aware iterable of batches already on the target device."""

    @abstractmethod
    def __len__(self) -> int:
        """Batches per epoch on this rank."""

    @abstractmethod
    def __iter__(self) -> Iterator[Batch]:
        """One epoch of batches."""

    @abstractmethod
    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose sample order and augmentation draws the next iteration yields."""

    @property
    @abstractmethod
    def num_samples(self) -> int:
        """Samples this rank yields per epoch (after sharding and dropping the last batch)."""

    def close(self) -> None:
        """Release worker processes and threads. Idempotent."""


class Pipeline(ABC):
    """An input pipeline: builds training and evaluation loaders over a split."""

    name: ClassVar[str]

    def __init__(self, spec: AugmentSpec, options: PipelineOptions) -> None:
        self.spec = spec
        self.options = options

    @abstractmethod
    def train_loader(self, split: Split) -> Loader:
        """Random crop, flip and lighting from the spec; shuffled, sharded by rank."""

    @abstractmethod
    def eval_loader(self, split: Split, *, ten_crop: bool = False) -> Loader:
        """Centre crop (or the ten views), every sample of this rank's shard exactly once, in order."""

    def describe(self) -> dict[str, Any]:
        """What the run record keeps about this pipeline (decoder, backend options, ...).

        One-off costs that must stay out of throughput figures (a conversion, a compilation,
        a graph build) go under ``"one_off_seconds": {"<what>": seconds}``, accumulated over
        the loaders built so far; the throughput harness reports them separately.
        """
        return {"name": self.name, "one_off_seconds": {}}
