"""The paper's PCA lighting and the normalisation, in one pass from uint8 pixels to floats.

Per image, ``shift = eigvec @ (alpha * eigval)`` with ``alpha ~ N(0, sigma)`` drawn from
(seed, epoch, index) is added to every pixel in the [0, 1] scale, then the channel mean is
subtracted and the result divided by the channel std:

    out = ((v / 255 + shift_c) - mean_c) / std_c      (float32, each step rounded as torch does)

The shift lives in the [0, 1] scale, so it cannot be applied to uint8 pixels without
rounding; doing it in the normalisation's pass also saves one. The 256 possible values of
each channel are computed first, in numpy, with exactly the float32 operations of the
torchvision pipeline (so with the same pixels and shift the outputs are bit for bit the
same); the compiled kernel only looks them up, like FFCV's ``NormalizeImage``. The output
is channels-first (N x 3 x H x W, or N x V x 3 x H x W for the ten views), freshly allocated
for every batch, so a batch stays valid after the next one is loaded.

On the CPU this runs before ``ToTensor``. After ``ToDevice`` (a CUDA state) it runs as torch
operations on the GPU instead: FFCV's own ``NormalizeImage`` needs cupy there.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from numba import prange
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from pipelines.ffcv_ops.compile import kernel_for
from pipelines.ffcv_ops.draws import LIGHTING, EpochDraws

_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


def lighting_shifts(draws: EpochDraws, indices: np.ndarray, matrix: np.ndarray, sigma: float) -> np.ndarray:
    """float32 N x 3: the shift of each sample, ``matrix @ alpha`` with alpha_i = sigma * N(0, 1) from stream LIGHTING[i]."""
    alpha = sigma * np.stack([draws.normal(indices, s) for s in LIGHTING], axis=1)
    return (alpha @ np.asarray(matrix, dtype=np.float64).T).astype(np.float32)


def lookup_tables(shifts: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """float32 T x 3 x 256: table[t, c, v] = ((v / 255 + shifts[t, c]) - mean[c]) / std[c]."""
    x = _LEVELS[None, None, :] + shifts[:, :, None]
    return (x - mean[None, :, None]) / std[None, :, None]


def lookup_loops(images: np.ndarray, out: np.ndarray, tables: np.ndarray, table_of: np.ndarray) -> np.ndarray:
    """out[m, c, y, x] = tables[table_of[m], c, images[m, y, x, c]]: per-pixel loops, what numba makes fast."""
    for m in prange(images.shape[0]):
        for c in range(3):
            table = tables[table_of[m], c]
            for y in range(images.shape[1]):
                for x in range(images.shape[2]):
                    out[m, c, y, x] = table[images[m, y, x, c]]
    return out


lookup_loops.is_parallel = True


def lookup_vectorised(images: np.ndarray, out: np.ndarray, tables: np.ndarray, table_of: np.ndarray) -> np.ndarray:
    """The same as ``lookup_loops`` with numpy's take per channel: what the interpreter makes fast (compiler off)."""
    for m in range(images.shape[0]):
        for c in range(3):
            out[m, c] = np.take(tables[table_of[m], c], images[m, :, :, c])
    return out


class LightingNormalize(Operation):
    """uint8 N x [V x] H x W x 3 -> float32 N x [V x] 3 x H x W, lit (when ``sigma`` > 0) and normalised."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        lighting_matrix: np.ndarray | None = None,
        sigma: float = 0.0,
        draws: EpochDraws | None = None,
    ) -> None:
        super().__init__()
        if sigma > 0 and (draws is None or lighting_matrix is None):
            raise ValueError("lighting needs draws and the lighting matrix")
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.matrix = None if lighting_matrix is None else np.asarray(lighting_matrix, dtype=np.float64)
        self.sigma = sigma
        self.draws = draws
        self.device: torch.device = torch.device("cpu")
        self.views: tuple[int, ...] = ()

    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Optional[AllocationQuery]]:
        *views, height, width, channels = previous_state.shape
        if channels != 3:
            raise ValueError(f"LightingNormalize needs RGB images, not {channels} channels")
        self.views = tuple(views)
        self.device = previous_state.device
        shape = (*views, 3, height, width)
        dtype = np.dtype(np.float32) if self.device.type == "cpu" else torch.float32
        # No allocation: every batch gets a fresh output (see the module docstring).
        return replace(previous_state, jit_mode=False, shape=shape, dtype=dtype), None

    def _shifts(self, indices: np.ndarray) -> np.ndarray:
        if self.sigma > 0:
            return lighting_shifts(self.draws, indices, self.matrix, self.sigma)
        return np.zeros((len(indices), 3), dtype=np.float32)

    def generate_code(self) -> Callable:
        return self._generate_cpu() if self.device.type == "cpu" else self._generate_gpu()

    def _generate_cpu(self) -> Callable:
        kernel = kernel_for(lookup_loops, lookup_vectorised)
        mean, std, views = self.mean, self.std, self.views
        per_view = int(np.prod(views)) if views else 1
        lit = self.sigma > 0
        fixed_tables = lookup_tables(np.zeros((1, 3), dtype=np.float32), mean, std)

        def lighting_normalize(images, _, indices):
            n = len(indices)
            height, width = images.shape[-3], images.shape[-2]
            flat = images.reshape(n * per_view, height, width, 3)
            if lit:
                tables = lookup_tables(self._shifts(indices), mean, std)
                table_of = np.repeat(np.arange(n), per_view)
            else:
                tables, table_of = fixed_tables, np.zeros(n * per_view, dtype=np.int64)
            out = np.empty((n * per_view, 3, height, width), dtype=np.float32)
            kernel(flat, out, tables, table_of)
            return out.reshape(n, *views, 3, height, width)

        lighting_normalize.with_indices = True
        return lighting_normalize

    def _generate_gpu(self) -> Callable:
        device, views = self.device, self.views
        channel = (1,) * len(views) + (3, 1, 1)
        mean = torch.from_numpy(self.mean).to(device).view(channel)
        std = torch.from_numpy(self.std).to(device).view(channel)
        # A tensor, not a Python number: torch divides by a scalar as a product with its reciprocal on a GPU.
        levels = torch.tensor(255.0, dtype=torch.float32, device=device)
        order = tuple(range(1 + len(views))) + tuple(d + 1 + len(views) for d in (2, 0, 1))  # ... H W C -> ... C H W

        def lighting_normalize(images, _, indices):
            *lead, height, width, _channels = images.shape
            x = torch.empty((*lead, 3, height, width), dtype=torch.float32, device=device)
            x.copy_(images.permute(order))  # uint8 -> float32 and channels first, in one pass
            x.div_(levels)
            x += torch.from_numpy(self._shifts(indices)).to(device, non_blocking=True).view(len(indices), *channel)
            return x.sub_(mean).div_(std)

        lighting_normalize.with_indices = True
        return lighting_normalize
