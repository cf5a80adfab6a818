"""Per-sample random numbers as a pure function of (seed, epoch, sample index, stream).

FFCV runs each pipeline stage over a whole batch, and its compiled operations spread the
samples over numba's threads; ``np.random`` inside compiled code keeps one state per thread,
so what a sample draws there depends on which thread took it. That is why FFCV's
``RandomResizedCrop`` cannot be seeded. Numba also freezes the values an operation captures
when it compiles, so compiled code cannot see the epoch changing.

So the draws are made here instead, in numpy, once per batch before the compiled kernel
runs: each is a counter-based hash of (seed, epoch, index, stream), SplitMix64's finaliser
(Steele, Lea & Flood, OOPSLA 2014) applied after absorbing each word. A sample's draws in an
epoch are therefore the same whatever the worker count, batch size, shard or compiler
setting, and a run resumed at epoch ``e`` (``set_epoch(e)``) draws what an uninterrupted one
would have. They follow the same distributions as the torchvision pipeline's but are not the
same numbers: that pipeline seeds a numpy ``Generator`` per sample, which costs about 50 us a
sample in Python, a ceiling of some 20k images/s per process that FFCV's loader would hit.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

# One stream per independent number a sample needs; an operation owns its streams.
CROP_TOP, CROP_LEFT, FLIP = 0, 1, 2
LIGHTING = (3, 4, 5)  # one normal per eigenvector, each from two uniforms (streams s and s + 16)
_NORMAL_PAIR = 16


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 with full avalanche (arrays wrap on overflow, silently)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _absorb(state: np.ndarray, word: int | np.ndarray) -> np.ndarray:
    """Mix one word (or one word per index) into the state; all operands are arrays, which wrap silently on overflow."""
    if isinstance(word, np.ndarray):
        words = word.astype(np.uint64, copy=False)
    else:
        words = np.array([word & _MASK64], dtype=np.uint64)
    return _mix(state + words * _GOLDEN)


def hash64(seed: int, epoch: int, indices: np.ndarray, stream: int) -> np.ndarray:
    """One uint64 per index: a hash of (seed, epoch, index, stream)."""
    state = np.zeros(1, dtype=np.uint64)
    for word in (seed, epoch):
        state = _absorb(state, word)
    state = _absorb(state, np.asarray(indices).astype(np.uint64))
    return _absorb(state, stream)


def uniform(seed: int, epoch: int, indices: np.ndarray, stream: int) -> np.ndarray:
    """float64 in [0, 1), 53 random bits each."""
    return (hash64(seed, epoch, indices, stream) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def integers(seed: int, epoch: int, indices: np.ndarray, stream: int, high: int) -> np.ndarray:
    """int64 uniform on {0, ..., high} (bias below 2**-40 for any high a crop can have)."""
    u = uniform(seed, epoch, indices, stream)
    return np.minimum(np.floor(u * (high + 1)).astype(np.int64), high)


def normal(seed: int, epoch: int, indices: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal (Box-Muller from two uniforms of this stream and its pair)."""
    u1 = uniform(seed, epoch, indices, stream)
    u2 = uniform(seed, epoch, indices, stream + _NORMAL_PAIR)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


class EpochDraws:
    """The draws of one loader: the run's seed and the epoch being loaded.

    The loader sets ``epoch`` before it starts an epoch; operations read it once per batch.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def uniform(self, indices: np.ndarray, stream: int) -> np.ndarray:
        return uniform(self.seed, self.epoch, indices, stream)

    def integers(self, indices: np.ndarray, stream: int, high: int) -> np.ndarray:
        return integers(self.seed, self.epoch, indices, stream, high)

    def normal(self, indices: np.ndarray, stream: int) -> np.ndarray:
        return normal(self.seed, self.epoch, indices, stream)
