"""The DALI pipeline: NVIDIA DALI decodes and augments (the graphs are in ``pipelines.dali_graph``),
this module sizes epochs, shards, seeds and hands the batches to torch.

Decoder. ``mixed`` (nvJPEG on the GPU, ``hw_decoder_load`` of the work on the hardware
decoder of an A100/H100) when the target device is CUDA and DALI sees a GPU
(``nvidia.dali.backend.GetCUDADeviceCount()``); otherwise the same graph with CPU operators
and ``device_id=None`` (DALI fails with ``device_id=0`` on a machine without a GPU). In the
mixed graph resizing, cropping, flipping and normalisation run on the GPU and the batch
reaches torch through DLPack without a copy (DALI 2.x's dynamic executor); in the CPU graph
the batch is on the host and is moved to the target device by torch. ``describe()`` says
which decoder ran, and how long DALI's pipeline builds took (``one_off_seconds``), which the
throughput harness keeps apart from rates.

Samples come from the ``Split`` (the manifest's file list and labels), never from DALI's own
directory scan. DALI's reader is given each sample's index in the split as its "label", and
the class label is looked up on the target device, so every batch also knows exactly which
samples it holds (``iter_indexed``).

Order and sharding. Training reads the epoch's permutation from ``pipelines.seeding`` (the
torchvision pipeline's order), cut to a multiple of the world size and arranged so that
DALI's contiguous shard ``rank`` (``shard_id``/``num_shards``, ``pad_last_batch=True``) holds
exactly the samples the torchvision sampler gives that rank: the same samples in the same
order, every sample once per epoch across ranks. Evaluation reads the manifest's order; rank
``r`` reads DALI's contiguous block ``[r * N // world_size, (r + 1) * N // world_size)``.

Seeding: what DALI guarantees and what it does not.

* Sample order is ours, not DALI's: its ``random_shuffle`` is a local buffer shuffle, and
  ``shuffle_after_epoch`` seeds its shuffle with a constant plus DALI's own epoch counter (the
  file loader's source), not with the pipeline's seed, and cannot start at epoch ``e``. Ours
  can: any epoch's order is a function of ``(seed, epoch)``.
* DALI draws the random numbers of a batch from per-sample-slot generators seeded from the
  pipeline's seed: the draw for the sample at position ``p`` of an epoch depends on the seed
  and on ``p`` (its batch and slot), not on the sample, and not on the number of threads or
  the prefetch depth (tested). Each training epoch is a freshly built DALI pipeline seeded
  from ``(seed, epoch, rank)``, so ``set_epoch(e)`` reproduces epoch ``e`` exactly, also after
  a resume. Unlike the torchvision pipeline, whose draws follow ``(seed, epoch, sample)``, a
  different batch size or world size gives the samples different draws.
* The random operators run on the CPU in both graphs, so the ``cpu`` and ``mixed`` graphs draw
  the same crops, flips and lighting for a seed; their pixels still differ slightly (nvJPEG
  and the GPU resampler are not bit-exact with libjpeg-turbo and the CPU resampler).

Equivalence with the torchvision pipeline (augmentation off, same files, evaluation crops;
DALI 2.4.0 CPU graph, x86_64, measured on the 3,100 embedded images and the 64 test images):
libjpeg-turbo decodes identically in both, and the antialiased bilinear resamplers round
differently: the centre crop differs by at most 1/255 per pixel (mean 0.165/255); the ten
views by at most 10/255 (mean 0.165/255), because on the rows or columns that lie on the
image's own edge PIL renormalises its filter where DALI repeats the edge pixel, and the
corner views contain them. ``tests/test_dali_pipeline.py`` holds the pipelines to that.

Throughput defaults: ``num_threads`` from ``options.workers`` (the CPU count unless set; 0
means the CPU count), ``prefetch_queue_depth`` from ``prefetch_depth`` (2), the evaluation
pipeline built once and reused every epoch, no Python in the graph. A training pipeline is
rebuilt every epoch (the price of choosing the epoch's order and seed freely): about 0.06 s
for the embedded data on a CPU, about 2 s for a 1.3M-file list (an ImageNet-sized epoch).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Iterator

import numpy as np
import torch
from nvidia.dali import __version__ as dali_version
from nvidia.dali.backend import GetCUDADeviceCount
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from bench.errors import UserError
from pipelines.base import Batch, Loader, Pipeline, PipelineOptions, Split
from pipelines.dali_graph import READER, eval_graph, train_graph
from pipelines.seeding import epoch_permutation
from pipelines.spec import AugmentSpec

DECODERS = ("auto", "mixed", "cpu")
DEFAULTS: dict[str, Any] = {"decoder": "auto", "hw_decoder_load": 0.65, "prefetch_depth": 2}


def choose_decoder(requested: str, device: torch.device) -> str:
    """``mixed`` or ``cpu`` for the ``requested`` setting; a one-line ``UserError`` when mixed cannot run."""
    if requested not in DECODERS:
        raise UserError(f"--dali-decoder {requested!r} is not one of: {', '.join(DECODERS)}")
    gpus = GetCUDADeviceCount()
    if requested == "mixed":
        if gpus == 0:
            raise UserError("--dali-decoder mixed: DALI sees no CUDA GPU on this machine (use auto or cpu)")
        if device.type != "cuda":
            raise UserError(f"--dali-decoder mixed decodes on the GPU and needs a CUDA --device, not {device}")
        return "mixed"
    if requested == "auto" and device.type == "cuda" and gpus > 0:
        return "mixed"
    return "cpu"


def pipeline_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit DALI pipeline seed for one training epoch of one rank (ranks draw differently)."""
    return int(np.random.SeedSequence([seed, epoch, rank, 0xDA11]).generate_state(1, dtype=np.uint64)[0] >> 1)


def shard_bounds(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """DALI's contiguous shard ``rank`` of ``num_samples``: ``[start, end)``."""
    return rank * num_samples // world_size, (rank + 1) * num_samples // world_size


def training_order(num_samples: int, seed: int, epoch: int, world_size: int) -> np.ndarray:
    """The epoch's file order as DALI reads it: the seeded permutation cut to a multiple of
    ``world_size``, rank ``r``'s strided share ``order[r::world_size]`` laid out as block ``r``."""
    order = epoch_permutation(num_samples, seed, epoch)
    order = order[: num_samples - num_samples % world_size]
    return np.concatenate([order[r::world_size] for r in range(world_size)])


class DaliLoader(Loader):
    """One split through one DALI graph, as the contract's ``(images, labels)`` batches on the target device."""

    def __init__(self, owner: "DaliPipeline", split: Split, *, train: bool, ten_crop: bool = False, drop_last: bool = False) -> None:
        o = owner.options
        self.owner = owner
        self.split = split
        self.train = train
        self.ten_crop = ten_crop
        self.drop_last = drop_last
        self.epoch = 0
        usable = len(split) - len(split) % o.world_size if train else len(split)
        start, end = shard_bounds(usable, o.rank, o.world_size)
        self.shard_size = end - start
        self._labels = torch.tensor(split.labels, dtype=torch.int64, device=owner.device)
        self._iterator: DALIGenericIterator | None = None  # kept between passes for evaluation only

    def __len__(self) -> int:
        b = self.owner.options.batch_size
        return self.shard_size // b if self.drop_last else math.ceil(self.shard_size / b)

    @property
    def num_samples(self) -> int:
        return len(self) * self.owner.options.batch_size if self.drop_last else self.shard_size

    def set_epoch(self, epoch: int) -> None:
        """Training: the next pass reads epoch ``epoch``'s order and draws. Evaluation: no effect."""
        self.epoch = epoch

    def files(self) -> tuple[list[str], list[int]]:
        """The file list DALI reads this epoch (all ranks' shards, in DALI's shard layout) and each file's split index."""
        o = self.owner.options
        order = training_order(len(self.split), o.seed, self.epoch, o.world_size) if self.train else np.arange(len(self.split))
        return [self.split.paths[i] for i in order], order.tolist()

    def _build(self) -> DALIGenericIterator:
        o, owner = self.owner.options, self.owner
        files, indices = self.files()
        common = dict(
            files=files,
            indices=indices,
            shard_id=o.rank,
            num_shards=o.world_size,
            spec=owner.spec,
            decoder=owner.decoder,
            hw_decoder_load=owner.settings["hw_decoder_load"],
            batch_size=o.batch_size,
            num_threads=owner.threads,
            device_id=owner.device_id,
            prefetch_queue_depth=owner.settings["prefetch_depth"],
        )
        if self.train:
            pipe = train_graph(**common, seed=pipeline_seed(o.seed, self.epoch, o.rank))
        else:
            pipe = eval_graph(**common, ten_crop=self.ten_crop, seed=o.seed)
        started = time.perf_counter()
        pipe.build()
        owner.record_build(time.perf_counter() - started)
        policy = LastBatchPolicy.DROP if self.drop_last else LastBatchPolicy.PARTIAL
        return DALIGenericIterator([pipe], ["images", "indices"], reader_name=READER, last_batch_policy=policy, auto_reset=True)

    def iter_indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One pass as ``(images, labels, indices)``: ``indices`` are the samples' positions in the split."""
        if len(self) == 0:
            return
        iterator = self._iterator if self._iterator is not None else self._build()
        self._iterator = None
        finished = False
        try:
            for [batch] in iterator:
                indices = batch["indices"].view(-1).to(self.owner.device, dtype=torch.int64)
                images = batch["images"].to(self.owner.device)
                yield images, self._labels[indices], indices
            finished = True
        finally:
            # A finished evaluation pass has reset itself and holds no random state: reuse it.
            # A training pass, or one left early, is rebuilt for the next pass.
            if finished and not self.train:
                self._iterator = iterator

    def __iter__(self) -> Iterator[Batch]:
        for images, labels, _ in self.iter_indexed():
            yield images, labels

    def close(self) -> None:
        self._iterator = None  # DALI shuts a pipeline's threads down when it is released


class DaliPipeline(Pipeline):
    """NVIDIA DALI: nvJPEG (``mixed``) or libjpeg-turbo (``cpu``) decode, the paper's augmentation as DALI operators."""

    name = "dali"

    def __init__(self, spec: AugmentSpec, options: PipelineOptions) -> None:
        super().__init__(spec, options)
        unknown = sorted(set(options.extra) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown DALI option(s): {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
        self.settings = {**DEFAULTS, **options.extra}
        if not 0.0 <= self.settings["hw_decoder_load"] <= 1.0:
            raise UserError(f"--dali-hw-decoder-load must be in [0, 1], not {self.settings['hw_decoder_load']}")
        if self.settings["prefetch_depth"] < 1:
            raise UserError(f"--dali-prefetch-depth must be at least 1, not {self.settings['prefetch_depth']}")
        self.device = torch.device(options.device)
        self.decoder = choose_decoder(self.settings["decoder"], self.device)
        self.device_id = (self.device.index if self.device.index is not None else torch.cuda.current_device()) if self.decoder == "mixed" else None
        self.threads = options.workers or os.cpu_count() or 1
        self.build_seconds = 0.0
        self.builds = 0

    def record_build(self, seconds: float) -> None:
        self.build_seconds += seconds
        self.builds += 1

    def train_loader(self, split: Split) -> DaliLoader:
        return DaliLoader(self, split, train=True, drop_last=self.options.drop_last)

    def eval_loader(self, split: Split, *, ten_crop: bool = False) -> DaliLoader:
        return DaliLoader(self, split, train=False, ten_crop=ten_crop, drop_last=False)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "decoder": self.decoder,
            "decoder_requested": self.settings["decoder"],
            "hw_decoder_load": self.settings["hw_decoder_load"] if self.decoder == "mixed" else None,
            "device_id": self.device_id,
            "threads": self.threads,
            "prefetch_depth": self.settings["prefetch_depth"],
            "pipeline_builds": self.builds,
            "dali_version": dali_version,
            "one_off_seconds": {"pipeline_build": self.build_seconds},
            "determinism": {
                "order": True,
                "augmentation": True,
                "note": "order from (seed, epoch) as torchvision's; draws from (seed, epoch, rank) and the sample's position "
                "in the epoch: independent of threads and prefetch depth, not of batch size or world size",
            },
        }
