"""Horizontal reflection with probability ``flip_prob``, drawn per sample from (seed, epoch, index).

FFCV's ``RandomHorizontalFlip`` draws with ``np.random`` inside compiled code: one state per
numba thread, so its choices are not reproducible (see draws.py).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Tuple

import numpy as np
from numba import prange
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from pipelines.ffcv_ops.compile import kernel_for
from pipelines.ffcv_ops.draws import FLIP, EpochDraws


def flip_loops(images: np.ndarray, dst: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """dst[i] = images[i] mirrored left-right where flips[i], else a copy."""
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    for i in prange(flips.shape[0]):
        last = width - 1 if flips[i] else 0
        step = -1 if flips[i] else 1
        for y in range(height):
            for x in range(width):
                for c in range(channels):
                    dst[i, y, x, c] = images[i, y, last + step * x, c]
    return dst[: flips.shape[0]]


flip_loops.is_parallel = True


def flip_sliced(images: np.ndarray, dst: np.ndarray, flips: np.ndarray) -> np.ndarray:
    for i in range(flips.shape[0]):
        dst[i] = images[i, :, ::-1] if flips[i] else images[i]
    return dst[: flips.shape[0]]


def flip_choices(draws: EpochDraws, indices: np.ndarray, flip_prob: float) -> np.ndarray:
    """Which samples of the batch are reflected (as the torchvision pipeline decides: u < p)."""
    return draws.uniform(indices, FLIP) < flip_prob


class RandomFlip(Operation):
    """uint8 N x H x W x C, each image mirrored left-right with probability ``flip_prob``."""

    def __init__(self, flip_prob: float, draws: EpochDraws) -> None:
        super().__init__()
        self.flip_prob = flip_prob
        self.draws = draws

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        # Not jit_mode for the same reason as Crop: the draws depend on the epoch.
        return replace(previous_state, jit_mode=False), AllocationQuery(previous_state.shape, previous_state.dtype)

    def generate_code(self) -> Callable:
        kernel = kernel_for(flip_loops, flip_sliced)
        draws, flip_prob = self.draws, self.flip_prob

        def flip(images, dst, indices):
            return kernel(images, dst, flip_choices(draws, indices, flip_prob))

        flip.with_indices = True
        return flip
