"""Crop: a size x size window of each image, at offsets drawn per sample (training) or the centre (evaluation).

The paper's training crop: a uniformly random integer offset in each direction of the 256 x 256
image (not FFCV's random-resized crop, which also rescales and cannot be seeded).
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
from pipelines.ffcv_ops.draws import CROP_LEFT, CROP_TOP, EpochDraws


def crop_loops(images: np.ndarray, dst: np.ndarray, tops: np.ndarray, lefts: np.ndarray) -> np.ndarray:
    """dst[i] = the window of images[i] at (tops[i], lefts[i]) the size of dst[i]."""
    height, width, channels = dst.shape[1], dst.shape[2], dst.shape[3]
    for i in prange(tops.shape[0]):
        top, left = tops[i], lefts[i]
        for y in range(height):
            for x in range(width):
                for c in range(channels):
                    dst[i, y, x, c] = images[i, top + y, left + x, c]
    return dst[: tops.shape[0]]


crop_loops.is_parallel = True


def crop_sliced(images: np.ndarray, dst: np.ndarray, tops: np.ndarray, lefts: np.ndarray) -> np.ndarray:
    height, width = dst.shape[1], dst.shape[2]
    for i in range(tops.shape[0]):
        dst[i] = images[i, tops[i] : tops[i] + height, lefts[i] : lefts[i] + width]
    return dst[: tops.shape[0]]


class Crop(Operation):
    """uint8 N x H x W x C -> N x size x size x C; random offsets from ``draws``, or the centre when ``draws`` is None."""

    def __init__(self, size: int, draws: EpochDraws | None = None) -> None:
        super().__init__()
        self.size = size
        self.draws = draws
        self.edges = (0, 0)

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        height, width, channels = previous_state.shape
        if not (self.size <= height and self.size <= width):
            raise ValueError(f"cannot crop {self.size} x {self.size} from {height} x {width} images")
        self.edges = (height - self.size, width - self.size)
        shape = (self.size, self.size, channels)
        # Not jit_mode: the offsets of a batch depend on the epoch, which compiled code cannot see (see draws.py);
        # this runs once per batch in Python and hands the pixel work to a compiled kernel.
        return replace(previous_state, jit_mode=False, shape=shape), AllocationQuery(shape, previous_state.dtype)

    def generate_code(self) -> Callable:
        kernel = kernel_for(crop_loops, crop_sliced)
        draws = self.draws
        edge_h, edge_w = self.edges

        def crop(images, dst, indices):
            n = len(indices)
            if draws is None:
                tops, lefts = np.full(n, edge_h // 2), np.full(n, edge_w // 2)
            else:
                tops, lefts = draws.integers(indices, CROP_TOP, edge_h), draws.integers(indices, CROP_LEFT, edge_w)
            return kernel(images, dst, tops, lefts)

        crop.with_indices = True
        return crop
