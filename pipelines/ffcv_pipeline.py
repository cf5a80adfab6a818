"""The FFCV pipeline: the split written once to a ``.beton`` file, then loaded by FFCV's
compiled, multithreaded loader with the paper's augmentation as FFCV operations.

Per batch, on a CPU::

    image: decode (raw copy, or libjpeg-turbo) -> Crop (random offsets | centre) | TenCrop
           -> RandomFlip -> LightingNormalize (lighting + mean/std, float32 N x 3 x H x W) -> ToTensor
    label: IntDecoder -> ToTensor -> Squeeze

On a GPU the image goes ``ToTensor -> ToDevice(non_blocking=True)`` after the flip, and the
lighting and normalisation run on the GPU (the uint8 crop is what crosses the bus); labels
end with ``ToDevice(non_blocking=True)``.

Determinism. FFCV 1.0.2 seeds only its order, and not the way the other pipelines do:
``Loader(seed=None)`` draws a seed from numpy's global state; ``OrderOption.RANDOM`` is
``default_rng(seed + epoch).permutation`` (seed s at epoch 1 is seed s + 1 at epoch 0);
with ``distributed=True`` it and ``SEQUENTIAL`` use torch's ``DistributedSampler`` (needs a
process group, pads shards with repeats); the epoch is a counter advanced by each
``iter()``, with no ``set_epoch``. Its random operations (``RandomHorizontalFlip``, the
random-resized crops) call ``np.random`` inside compiled code, where numba keeps one
unseedable state per thread. Here instead the order is the torchvision pipeline's
(``ffcv_ops/order.py``) and every random draw is a hash of (seed, epoch, sample index)
(``ffcv_ops/draws.py``), made before the compiled kernels run. So a seed fixes every
epoch's batches bit for bit whatever the thread count, the compiler setting or a resume
through ``set_epoch``; a sample's draws do not depend on the batch size, the number of
ranks or the device. The draws follow the torchvision pipeline's distributions but are not
its numbers; the order and the evaluation views are the same (with raw storage, the same
values bit for bit).

One-off costs, reported by ``describe()["one_off_seconds"]`` and kept out of the epochs:
``conversion`` (writing ``.beton`` files; 0 when they were cached) and ``compile`` (building
each Loader and loading its first batch, when numba compiles its code: the Loader is warmed
up when it is built, so training and throughput figures start compiled).

Threads: FFCV sets torch's intra-op thread count to its own thread count when a Loader is
built and at the start of every epoch; this pipeline restores the caller's each time. FFCV's
threads are numba's, capped at ``numba.config.NUMBA_NUM_THREADS`` (the core count), and
``workers`` = 0 means one.

Batches: FFCV reuses its buffers a few batches later; the images and labels handed out here
are fresh tensors, so a batch stays valid while later ones are loaded. An epoch left early
(``--steps-per-epoch``, an exception, a new ``iter()``) stops FFCV's loading thread within a
batch (see ``FfcvLoader._stop``): no thread outlives its epoch, so nothing compiled is
collected while a thread still runs it.
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numba
import torch

import ffcv  # noqa: F401 - a missing FFCV (or OpenCV, libjpeg-turbo) fails here: the registry says what to install
from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader as FfcvDataLoader
from ffcv.pipeline.compiler import Compiler
from ffcv.transforms import Squeeze, ToDevice, ToTensor

from pipelines.base import Batch, Loader, Pipeline, PipelineOptions, Split
from pipelines.ffcv_convert import ConversionOptions, ensure_beton
from pipelines.ffcv_ops import Crop, EpochDraws, LightingNormalize, RandomFlip, ShardedOrder, TenCrop
from pipelines.spec import AugmentSpec

STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FfcvSettings:
    """The run's ``ffcv_*`` settings (``PipelineOptions.extra``, prefix removed); FFCV's defaults where it has them."""

    write_mode: str = "auto"  # how images are stored: raw (exact), jpg, or auto (raw if it fits in a share of the free disk)
    jpeg_quality: int = 90
    resize_rule: str = "paper"  # paper: stored 256 x 256 after the paper's preprocessing; max-side: stored as is, capped
    max_side: int = 512  # the longer side's cap under max-side
    os_cache: bool = True  # read through the OS page cache (FFCV's default) rather than FFCV's own process cache
    batches_ahead: int = 3
    compile: bool = True  # numba-compile the pipeline (off: the same pipeline interpreted, for debugging and tests)

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> "FfcvSettings":
        unknown = sorted(set(extra) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown FFCV option(s): {', '.join(unknown)}")
        settings = cls(**extra)
        if settings.batches_ahead < 1:
            raise ValueError(f"batches_ahead must be at least 1, not {settings.batches_ahead}")
        return settings

    def conversion(self, spec: AugmentSpec) -> ConversionOptions:
        return ConversionOptions(
            write_mode=self.write_mode,
            jpeg_quality=self.jpeg_quality,
            resize_rule=self.resize_rule,
            max_side=self.max_side,
            resize=spec.resize,
        )


@contextmanager
def compiler_enabled(enabled: bool) -> Iterator[None]:
    """FFCV's compiler switch is global and read when a Loader generates its code: set it for that, then restore it."""
    previous = Compiler.is_enabled
    Compiler.set_enabled(enabled)
    try:
        yield
    finally:
        Compiler.set_enabled(previous)


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """FFCV sets torch's intra-op thread count to its own (``Compiler.set_num_threads``): keep the caller's."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class FfcvLoader(Loader):
    """One FFCV Loader behind the contract: epochs chosen by ``set_epoch``, fresh tensors on the target device."""

    def __init__(self, loader: FfcvDataLoader, draws: EpochDraws, *, device: torch.device) -> None:
        self._loader = loader
        self._draws = draws
        self.device = device
        self.batch_size = loader.batch_size
        self._epoch = 0
        self._active: threading.Thread | None = None  # FFCV's EpochIterator of the epoch being loaded
        self.compile_seconds = 0.0  # building this Loader and loading its first batch (set by FfcvPipeline)

    def __len__(self) -> int:
        return len(self._loader)

    @property
    def num_samples(self) -> int:
        if self._loader.drop_last:
            return len(self) * self.batch_size
        return len(self._loader.first_traversal_order)

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        self._stop()  # an epoch left unfinished must stop before the draws move to the next one
        self._draws.epoch = self._epoch
        self._loader.next_epoch = self._epoch
        # FFCV makes its CUDA streams on the current device: make that the target device.
        on_device = torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()
        with torch_threads_kept(), on_device:
            epoch_iterator = iter(self._loader)
        self._active = epoch_iterator
        return self._batches(epoch_iterator)

    def _batches(self, epoch_iterator) -> Iterator[Batch]:
        stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        try:
            while self._active is epoch_iterator:  # a later __iter__ stops this epoch: then it just ends
                try:
                    images, labels = next(epoch_iterator)
                except StopIteration:
                    return
                if stream is not None:
                    # made on FFCV's side stream: keep the allocator from reusing the memory while this stream reads it
                    images.record_stream(stream)
                yield images, labels.clone()  # labels sit in a buffer FFCV reuses
        finally:
            self._stop(epoch_iterator)

    def _stop(self, epoch_iterator=None) -> None:
        """Stop FFCV's loading thread after at most the batch it is working on.

        FFCV's ``close()`` sets a flag its thread reads only when its queue is full, and its
        end-of-epoch ``put(None)`` waits for room without a timeout: an epoch left early could
        keep the thread busy for the rest of the epoch and then blocked for ever. So the thread
        is also given no further batches, and its queue is emptied until it has ended.
        """
        epoch_iterator = epoch_iterator or self._active
        if epoch_iterator is None:
            return
        epoch_iterator.close()
        epoch_iterator.iter_ixes = iter(())
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while epoch_iterator.is_alive() and time.monotonic() < deadline:
            epoch_iterator.join(0.05)
            try:
                epoch_iterator.output_queue.get_nowait()
            except queue.Empty:
                pass
        if epoch_iterator.is_alive():
            warnings.warn(f"FFCV's loading thread did not stop within {STOP_TIMEOUT_S:.0f} s", RuntimeWarning, stacklevel=2)
        if self._active is epoch_iterator:
            self._active = None

    def first_batch_seconds(self) -> float:
        """Load one batch and stop (numba compiles on first use); the seconds to that batch."""
        if len(self) == 0:
            return 0.0
        started = time.perf_counter()
        batches = iter(self)
        next(batches)
        seconds = time.perf_counter() - started
        batches.close()
        return seconds

    def close(self) -> None:
        self._stop()


class FfcvPipeline(Pipeline):
    """FFCV: ``.beton`` storage, compiled multithreaded loading, the paper's augmentation as FFCV operations."""

    name = "ffcv"

    def __init__(self, spec: AugmentSpec, options: PipelineOptions) -> None:
        super().__init__(spec, options)
        if not options.cache_dir:
            raise ValueError("the FFCV pipeline keeps its .beton files under options.cache_dir, which is empty")
        self.settings = FfcvSettings.from_extra(options.extra)
        self.conversion = self.settings.conversion(spec)
        self.device = torch.device(options.device)
        self.threads = max(1, min(options.workers, numba.config.NUMBA_NUM_THREADS))
        self.betons: dict[str, Path] = {}
        self.converted: list[str] = []
        self.one_off_seconds = {"conversion": 0.0, "compile": 0.0}
        self.storage_choice: dict | None = None

    def _beton(self, split: Split) -> Path:
        beton = ensure_beton(split, self.conversion, self.options.cache_dir, workers=max(1, self.options.workers))
        if beton.choice is not None:  # auto resolved: every later split of this run is stored the same way
            self.conversion = beton.choice.options
            self.storage_choice = beton.choice.describe()
            if self.options.rank == 0:
                print(beton.choice.line, flush=True)
        if beton.converted:
            self.converted.append(split.name)
            self.one_off_seconds["conversion"] += beton.seconds
        self.betons[split.name] = beton.path
        return beton.path

    def _image_ops(self, draws: EpochDraws, *, train: bool, ten_crop: bool) -> list:
        spec = self.spec
        if self.settings.resize_rule == "paper":
            ops: list = [SimpleRGBImageDecoder()]  # stored at resize x resize already
        else:
            ops = [CenterCropRGBImageDecoder((spec.resize, spec.resize), ratio=1.0)]  # the paper's preprocessing, OpenCV's resampling
        if ten_crop:
            ops.append(TenCrop(spec.crop, spec.ten_crop_offsets()))
        else:
            ops.append(Crop(spec.crop, draws if train else None))
        if train and spec.flip_prob > 0:
            ops.append(RandomFlip(spec.flip_prob, draws))
        lit = train and spec.lighting_sigma > 0
        normalize = LightingNormalize(
            spec.colour.mean,
            spec.colour.std,
            lighting_matrix=spec.lighting_matrix() if lit else None,
            sigma=spec.lighting_sigma if lit else 0.0,
            draws=draws if lit else None,
        )
        if self.device.type == "cuda":
            return ops + [ToTensor(), ToDevice(self.device, non_blocking=True), normalize]
        return ops + [normalize, ToTensor()]  # on a CPU: normalise before ToTensor (see DESIGN.md)

    def _label_ops(self) -> list:
        ops: list = [IntDecoder(), ToTensor(), Squeeze(1)]
        if self.device.type == "cuda":
            ops.append(ToDevice(self.device, non_blocking=True))
        return ops

    def _loader(self, split: Split, *, train: bool, ten_crop: bool = False) -> FfcvLoader:
        path = self._beton(split)
        o, s = self.options, self.settings
        draws = EpochDraws(o.seed)
        started = time.perf_counter()
        with compiler_enabled(s.compile), torch_threads_kept():
            loader = FfcvDataLoader(
                str(path),
                batch_size=o.batch_size,
                num_workers=self.threads,
                os_cache=s.os_cache,
                order=ShardedOrder(seed=o.seed, shuffle=train, rank=o.rank, world_size=o.world_size),
                distributed=o.world_size > 1,  # our order shards by rank (FFCV's would use DistributedSampler)
                seed=o.seed,
                pipelines={"image": self._image_ops(draws, train=train, ten_crop=ten_crop), "label": self._label_ops()},
                drop_last=o.drop_last if train else False,
                batches_ahead=s.batches_ahead,
            )
        wrapped = FfcvLoader(loader, draws, device=self.device)
        built = time.perf_counter() - started
        wrapped.compile_seconds = built + (wrapped.first_batch_seconds() if s.compile else 0.0)
        self.one_off_seconds["compile"] += wrapped.compile_seconds
        return wrapped

    def train_loader(self, split: Split) -> Loader:
        return self._loader(split, train=True)

    def eval_loader(self, split: Split, *, ten_crop: bool = False) -> Loader:
        return self._loader(split, train=False, ten_crop=ten_crop)

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            **super().describe(),
            "decoder": {"jpg": "libjpeg-turbo (FFCV)", "raw": "none (raw pixels)"}.get(self.conversion.write_mode, "not chosen yet (auto)"),
            "storage": self.conversion.relevant() if self.conversion.write_mode != "auto" else {"write_mode": "auto"},
            "storage_choice": self.storage_choice,
            "threads": self.threads,
            "os_cache": s.os_cache,
            "batches_ahead": s.batches_ahead,
            "compiled": s.compile,
            "on_device": "ToDevice(non_blocking) + lighting and normalisation on the GPU" if self.device.type == "cuda" else "none (CPU)",
            "determinism": {
                "order": True,
                "augmentation": True,
                "note": "order from (seed, epoch) as torchvision's; draws hashed from (seed, epoch, sample index): independent of "
                "threads, batch size, world size, the compiler setting and resumes; the torchvision pipeline's distributions, not its numbers",
            },
            "betons": {name: str(path) for name, path in self.betons.items()},
            "converted": list(self.converted),
            "one_off_seconds": dict(self.one_off_seconds),
        }
