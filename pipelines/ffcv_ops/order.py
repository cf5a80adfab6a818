"""The order FFCV loads samples in: the torchvision pipeline's, sharded by rank the same way.

FFCV's own orders do not fit: ``RANDOM`` permutes with ``default_rng(seed + epoch)`` (so seed
s at epoch 1 is seed s + 1 at epoch 0), and with ``distributed=True`` both it and
``SEQUENTIAL`` use torch's ``DistributedSampler``, which needs an initialised process group
and pads every rank's shard with repeated samples (an evaluation would count them twice);
``QUASI_RANDOM`` refuses ``distributed=True``. This order is ``SeededSampler``'s: training
takes the epoch's permutation from ``pipelines.seeding``, cut to a multiple of the world size,
every ``world_size``-th sample from ``rank``; evaluation takes the manifest's order, every
``world_size``-th sample. Every sample is seen once per epoch across ranks, and the order
depends on (seed, epoch) only, so ``set_epoch`` reaches any epoch directly.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ffcv.traversal_order.base import TraversalOrder

from pipelines.torchvision_pipeline import SeededSampler


class ShardedOrder(TraversalOrder):
    """A ``TraversalOrder`` for ``ffcv.loader.Loader(order=ShardedOrder(...))``.

    FFCV's Loader calls ``order(loader)`` on a ``TraversalOrder`` instance it is given, so the
    instance is made first with the sharding and bound to its loader by that call.
    """

    def __init__(self, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:  # noqa: D107 - bound in __call__
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size

    def __call__(self, loader) -> "ShardedOrder":
        super().__init__(loader)  # sets indices, seed, distributed, sampler from the loader
        self.seed = loader.seed
        self.sampler = SeededSampler(len(self.indices), seed=self.seed, shuffle=self.shuffle, rank=self.rank, world_size=self.world_size)
        return self

    def sample_order(self, epoch: int) -> Sequence[int]:
        self.sampler.set_epoch(epoch)
        return self.indices[np.asarray(self.sampler.indices(), dtype=np.int64)]
