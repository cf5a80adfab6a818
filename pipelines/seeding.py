"""Seeds derived from (run seed, epoch, sample): the same draw whatever the worker count.

Every pipeline derives the random numbers of one use of one sample from these three
numbers only, so a resumed or re-sharded run sees the same augmentation for sample i in
epoch e. ``numpy.random.SeedSequence`` does the mixing.
"""

from __future__ import annotations

import numpy as np


def draw_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for whole-epoch decisions (sample order, dropout)."""
    return draw_seed(seed, epoch, 2**32 - 1)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of ``epoch``: a permutation of ``range(num_samples)``."""
    return np.random.default_rng(epoch_seed(seed, epoch)).permutation(num_samples)


def rank_order(num_samples: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Rank ``rank``'s training samples of ``epoch``, in order: the epoch's permutation cut to a
    multiple of ``world_size`` (every rank takes as many steps), then every ``world_size``-th from ``rank``."""
    usable = num_samples - num_samples % world_size
    return epoch_permutation(num_samples, seed, epoch)[:usable][rank::world_size].tolist()
