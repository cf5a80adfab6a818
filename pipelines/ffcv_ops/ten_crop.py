"""The paper's ten test views: four corner crops and the centre crop, and their reflections.

The views come out in the order of ``AugmentSpec.ten_crop_offsets()``, shared by all pipelines.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
from numba import prange
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from pipelines.ffcv_ops.compile import kernel_for


def ten_crop_loops(images: np.ndarray, dst: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """dst[i, v] = the window of images[i] at offsets[v] = (top, left, flipped), the size of dst[i, v]."""
    size, channels = dst.shape[2], dst.shape[4]
    for i in prange(images.shape[0]):
        for v in range(offsets.shape[0]):
            top, left = offsets[v, 0], offsets[v, 1]
            first = left + size - 1 if offsets[v, 2] else left
            step = -1 if offsets[v, 2] else 1
            for y in range(size):
                for x in range(size):
                    for c in range(channels):
                        dst[i, v, y, x, c] = images[i, top + y, first + step * x, c]
    return dst[: images.shape[0]]


ten_crop_loops.is_parallel = True


def ten_crop_sliced(images: np.ndarray, dst: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    size = dst.shape[2]
    for i in range(images.shape[0]):
        for v, (top, left, flipped) in enumerate(offsets):
            view = images[i, top : top + size, left : left + size]
            dst[i, v] = view[:, ::-1] if flipped else view
    return dst[: images.shape[0]]


class TenCrop(Operation):
    """uint8 N x H x W x C -> N x V x size x size x C, view v at ``offsets[v] = (top, left, flipped)``."""

    def __init__(self, size: int, offsets: Sequence[tuple[int, int, bool]]) -> None:
        super().__init__()
        self.size = size
        self.offsets = np.array([(t, l, int(f)) for t, l, f in offsets], dtype=np.int64)

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        height, width, channels = previous_state.shape
        fits = self.offsets[:, :2].min() >= 0 and self.offsets[:, 0].max() + self.size <= height and self.offsets[:, 1].max() + self.size <= width
        if not fits:
            raise ValueError(f"ten-crop views of {self.size} do not fit in {height} x {width} images")
        shape = (len(self.offsets), self.size, self.size, channels)
        # Not jit_mode, like the other operations here: a Python call per batch into a kernel compiled once per process.
        return replace(previous_state, jit_mode=False, shape=shape), AllocationQuery(shape, previous_state.dtype)

    def generate_code(self) -> Callable:
        kernel = kernel_for(ten_crop_loops, ten_crop_sliced)
        offsets = self.offsets

        def ten_crop(images, dst):
            return kernel(images, dst, offsets)

        return ten_crop
