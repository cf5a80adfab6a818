"""The DALI training graph's input: each batch's files and draws, made by DALI's Python workers.

``EpochFeed`` is the callback of a parallel ``external_source`` in batch mode: DALI calls it
with a ``BatchInfo`` (the iteration in the epoch, and DALI's count of epochs since the graph
was built) in its own worker processes, which run ahead of the graph by the source's prefetch
depth. So the files are read, their headers parsed and their draws made beside DALI's
threads, and the iterating thread only hands finished batches to torch.

Why workers (issue 14; the CPU graph on 2 threads, this project's 2-core CPU, 2,600 embedded
images, batch 32). Per-thread CPU time from ``/proc`` showed DALI's two threads doing the same
work per image as in DALI's ResNet-50 example, but busy 0.66-0.73 of the time against its
0.84-0.88, with the feed in the iterating thread. The example's own graph fed from the
iterating thread lost the same (1,112-1,114 against 1,230-1,258 images/s with DALI's file
reader). From one worker process: 1,131-1,285 against 979-1,104 images/s in alternated runs of
the loader alone; in alternated throughput-harness runs (``--baselines``, the README's
command) 1,093-1,151 against 1,021-1,184, that is 0.95-1.04 against 0.90-1.01 times the
example. Reading the files in the graph instead (``fn.io.file.read``, memory-mapped, paths
fed) was slower: 994-1,028 against 1,065-1,141 images/s, one more operator on DALI's threads.

Everything the callback returns is a function of ``(seed, epoch, iteration)``: the rank's order
is ``pipelines.seeding.rank_order`` (the torchvision sampler's), each sample's draws are
``AugmentSpec.draw(draw_seed(seed, epoch, index))`` (the torchvision pipeline's numbers), and
each crop's decode region comes from the file's header (``upright_size``, ``crop_region``). So
workers may run batches in any order, and the loader can name the files of a failed batch.
"""

from __future__ import annotations

import gc
import io
import os
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from PIL import ExifTags, Image

from pipelines.base import PipelineOptions, Split
from pipelines.dali_graph import crop_region
from pipelines.lifetime import die_with
from pipelines.seeding import draw_seed, rank_order
from pipelines.spec import AugmentSpec


def lighting_means(spec: AugmentSpec, alphas: np.ndarray) -> np.ndarray:
    """Per-image normalisation means with the paper's lighting folded in, 0-255 units (``N x 3`` float32).

    The spec adds ``shift = M @ alpha`` to pixels in [0, 1] before normalising: ``(x / 255 +
    shift - mean) / std == (x - 255 * (mean - shift)) / (255 * std)``, so the shift becomes a
    per-image mean for ``crop_mirror_normalize``: three numbers per image instead of a pass
    over every pixel.
    """
    shifts = alphas @ spec.lighting_matrix().T
    return (255.0 * (np.asarray(spec.colour.mean)[None, :] - shifts)).astype(np.float32)


def upright_size(data: np.ndarray, path: str) -> tuple[int, int]:
    """``(height, width)`` of an encoded image as DALI decodes it: turned upright by its EXIF
    orientation (5 to 8 swap the sides), read from the header by PIL (about 25 microseconds)."""
    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            width, height = img.size
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)  # 1 or absent: upright
    except (OSError, ValueError) as err:
        raise RuntimeError(f"cannot read the image header of {path}: {err}") from err
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


_forking_for: int | None = None  # the loader's process id while it forks feed workers (``forking_workers``)


def _arm_forked_worker() -> None:
    """Run by ``os.fork`` in every child: a feed worker forked by ``forking_workers`` arms ``die_with``
    at once, so a run killed between the fork and the feed's first call leaves no worker behind."""
    if _forking_for is not None:
        die_with(_forking_for)


os.register_at_fork(after_in_child=_arm_forked_worker)


@contextmanager
def forking_workers(forking: bool) -> Iterator[None]:
    """Around a ``Pipeline.build`` that forks the feed's workers (``forking``).

    - The workers die with this process from the moment they are forked (``die_with``, armed
      by an ``os.register_at_fork`` hook while this block runs). The feed's first call arms
      it again, which covers spawned workers.
    - They inherit no garbage. A graph left by an earlier pass (the stock baseline's, in a
      cycle) is often unreachable but not yet collected. A forked worker's own garbage
      collection would then run its ``Pipeline.__del__``, which waits forever for DALI threads
      that fork did not copy; it hung the suite's smoke run. So the garbage is collected here
      first, where its threads can shut down, and every object is frozen (``gc.freeze``)
      while the workers are forked, so nothing they inherit is ever collected in them. Python's
      ``gc`` documentation gives the same recipe for fork without exec.
    """
    global _forking_for
    if not forking:
        yield
        return
    gc.collect()
    gc.freeze()
    _forking_for = os.getpid()
    try:
        yield
    finally:
        _forking_for = None
        gc.unfreeze()


class EpochFeed:
    """This rank's training batches, as ``pipelines.dali_graph.FEED``'s columns, for DALI's workers.

    Batch ``info.iteration`` of epoch ``first_epoch + info.epoch_idx`` (DALI counts the epochs
    since the graph was built: the loader builds a new graph when the next epoch is not the one
    after the last); ``StopIteration`` after the epoch's last batch, which is partial unless
    ``drop_last``. Workers keep the last epoch's order and each file's upright size.
    """

    def __init__(self, split: Split, spec: AugmentSpec, options: PipelineOptions, *, drop_last: bool, first_epoch: int) -> None:
        self.paths, self.spec, self.drop_last, self.first_epoch = split.paths, spec, drop_last, first_epoch
        self.batch_size, self.seed, self.rank, self.world_size = options.batch_size, options.seed, options.rank, options.world_size
        self._order: tuple[int, list[int]] = (-1, [])  # (epoch, this rank's samples)
        self._sizes: dict[int, tuple[int, int]] = {}  # split index -> upright (height, width)
        self._parent = os.getpid()  # the loader's process; a worker dies with it (``die_with``)
        self._armed: int | None = None  # the worker process that has called ``die_with``

    def order(self, epoch: int) -> list[int]:
        """This rank's samples of ``epoch``, in order (the torchvision sampler's)."""
        if self._order[0] != epoch:
            self._order = (epoch, rank_order(len(self.paths), self.seed, epoch, self.rank, self.world_size))
        return self._order[1]

    def batch(self, epoch: int, iteration: int) -> list[int]:
        """The split indices of batch ``iteration`` of ``epoch``; empty after the last."""
        order, b = self.order(epoch), self.batch_size
        stop = len(order) - len(order) % b if self.drop_last else len(order)
        return order[iteration * b : min((iteration + 1) * b, stop)]

    def _size(self, index: int, data: np.ndarray) -> tuple[int, int]:
        if index not in self._sizes:
            self._sizes[index] = upright_size(data, self.paths[index])
        return self._sizes[index]

    def __call__(self, info: Any) -> tuple[Any, ...]:
        if self._armed != os.getpid():  # first call in this worker (a spawned one is not armed yet)
            die_with(self._parent)
            self._armed = os.getpid()
        epoch = self.first_epoch + info.epoch_idx
        batch = self.batch(epoch, info.iteration)
        if not batch:
            raise StopIteration
        draws = [self.spec.draw(draw_seed(self.seed, epoch, i)) for i in batch]
        files = [np.fromfile(self.paths[i], dtype=np.uint8) for i in batch]
        regions = [crop_region(*self._size(i, data), self.spec, top, left) for i, data, (top, left, _, _) in zip(batch, files, draws)]
        return (
            files,
            np.array(batch, dtype=np.int64).reshape(-1, 1),
            *(np.array([r[k] for r in regions], dtype=dtype) for k, dtype in enumerate((np.int32, np.int32, np.float32, np.float32))),
            np.array([int(flip) for _, _, flip, _ in draws], dtype=np.int32),
            lighting_means(self.spec, np.array([alpha for *_, alpha in draws]).reshape(-1, 3)),
        )
