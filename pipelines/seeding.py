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
