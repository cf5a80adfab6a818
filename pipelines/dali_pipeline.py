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

Order and sharding. Training feeds the graph through one parallel ``external_source``
(``pipelines.dali_feed.EpochFeed``, run by DALI's Python worker processes): each epoch, this
rank's share of the torchvision sampler's order (``pipelines.seeding.rank_order``: the epoch's
permutation, cut to a multiple of the world size, every ``world_size``-th sample from
``rank``), the files' bytes, and each sample's draws. Evaluation
reads the manifest's order with DALI's reader; rank ``r`` reads DALI's contiguous block
``[r * N // world_size, (r + 1) * N // world_size)``.

Seeding. DALI's own randomness is not used in training: ``random_shuffle`` is a local buffer
shuffle, ``shuffle_after_epoch`` seeds with a constant plus DALI's epoch counter, and its random
operators draw per sample *slot* from the pipeline's seed, so choosing an epoch used to mean
rebuilding the pipeline with a new seed every epoch (nvJPEG set-up inside the epoch; issue 13).
Instead each sample's crop, flip and lighting are ``AugmentSpec.draw(draw_seed(seed, epoch,
index))``, the torchvision pipeline's own numbers, made in Python (about 20 microseconds per
sample) and fed with the files. So the graph is built once per loader, ``set_epoch(e)``
reproduces epoch ``e`` exactly (also after a resume), and the draws do not depend on threads,
feed workers, prefetch depth, batch size, world size or the decoder. DALI cannot reset a
pipeline in the middle of an epoch, and its workers count epochs from the build: a pass left
early (``--steps-per-epoch``, a new ``iter()``), or a pass of any epoch but the next, costs
one rebuild.

Output. In the CPU graph on a CPU run, and in the mixed graph (on the GPU, handed over through
DLPack without a copy), DALI normalises and the batch is float. When the CPU decoder feeds a
CUDA device (``--dali-decoder cpu`` or a GPU DALI cannot use), the graph stops at the uint8
crop: torch pins it, copies it without blocking and normalises it on the device with the
per-image means (4x fewer bytes than float32 over the bus, no synchronous pageable copy).

Equivalence with the torchvision pipeline (augmentation off, same files, evaluation crops;
DALI 2.4.0 CPU graph, x86_64, measured on the 3,100 embedded images and the 64 test images):
libjpeg-turbo decodes identically in both, and the antialiased bilinear resamplers round
differently: the centre crop differs by at most 1/255 per pixel (mean 0.165/255); the ten
views by at most 10/255 (mean 0.165/255), because on the rows or columns that lie on the
image's own edge PIL renormalises its filter where DALI repeats the edge pixel, and the
corner views contain them. ``tests/test_dali_pipeline.py`` holds the pipelines to that.

Throughput defaults: ``num_threads`` from ``options.workers`` (the CPU count unless set; 0
means the CPU count), ``prefetch_queue_depth`` from ``prefetch_depth`` (2), the training graph
built once per loader and the evaluation graph once per loader, no Python in the graph (the
training feed runs in ``feed_workers`` (1) worker processes, ahead by the prefetch depth;
forked, or spawned where a CUDA driver is initialised, as DALI requires: ``feed_start``).
Measured for these defaults (issue 14; CPU graph, 2 threads on this project's 2-core CPU,
batch 32, 500x375 JPEGs, one run per setting, runs vary by about 10%): prefetch depth 1, 2,
3, 4 gave 840, 979, 1008, 934 images/s, so 2 stays; uint8 output normalised by torch instead
of DALI's float ``crop_mirror_normalize``: 1.51 against 1.55 ms of CPU per image, no gain;
a thread reading the next batch's files ahead: no gain. What paid: the feed in DALI's worker
processes rather than the iterating thread (``pipelines.dali_feed`` has the figures); each crop's region computed
by the feed from the file's header (``upright_size``, ``crop_region``) instead of in the graph
(``peek_image_shape`` and some twenty arithmetic operators): 1,044-1,092 against 887-967
images/s in alternated runs, and steadier. Per image on one thread, DALI's CPU operators cost
0.61 ms to decode the crop's region (``image_slice``), about 0.55 ms to resize it and 0.28 ms to
normalise to float: the graph, not its settings, sets the CPU rate (GPU: ``mixed``).
"""

from __future__ import annotations

import math
import os
import re
import time
from typing import Any, Iterator

import torch
from nvidia.dali import __version__ as dali_version
from nvidia.dali.backend import GetCUDADeviceCount, IsDriverInitialized
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from bench.errors import UserError
from pipelines.base import Batch, Loader, Pipeline, PipelineOptions, Split
from pipelines.dali_feed import EpochFeed, forking_workers
from pipelines.dali_graph import READER, eval_graph, train_graph
from pipelines.spec import AugmentSpec

DECODERS = ("auto", "mixed", "cpu")
DEFAULTS: dict[str, Any] = {"decoder": "auto", "hw_decoder_load": 0.65, "prefetch_depth": 2, "feed_workers": 1, "uint8_output": False,
                            "feed_start": "auto"}
FEED_STARTS = ("auto", "fork", "spawn")


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


def shard_bounds(num_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """DALI's contiguous shard ``rank`` of ``num_samples``: ``[start, end)``."""
    return rank * num_samples // world_size, (rank + 1) * num_samples // world_size


class DaliLoader(Loader):
    """One split through one DALI graph, as the contract's ``(images, labels)`` batches on the target device.

    Training: one graph for the loader's life, fed each epoch by an ``EpochFeed``; it is
    rebuilt only when a pass was left before its end (DALI cannot reset a pipeline mid-epoch).
    Evaluation: one graph reading the manifest's order, reused every pass.
    """

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
        self._feed: EpochFeed | None = None  # training: the built graph's feed
        self._next_epoch = 0  # training: the epoch the kept graph feeds on its next pass (DALI counts epochs itself)
        self._iterator: DALIGenericIterator | None = None
        self._at_epoch_end = False  # the kept iterator finished a pass and can be reset for the next

    def __len__(self) -> int:
        b = self.owner.options.batch_size
        return self.shard_size // b if self.drop_last else math.ceil(self.shard_size / b)

    @property
    def num_samples(self) -> int:
        return len(self) * self.owner.options.batch_size if self.drop_last else self.shard_size

    def set_epoch(self, epoch: int) -> None:
        """Training: the next pass reads epoch ``epoch``'s order and draws. Evaluation: no effect."""
        self.epoch = epoch

    def _build(self) -> DALIGenericIterator:
        o, owner = self.owner.options, self.owner
        common = dict(spec=owner.spec, decoder=owner.decoder, hw_decoder_load=owner.settings["hw_decoder_load"], uint8=owner.uint8_output,
                      batch_size=o.batch_size, num_threads=owner.threads, device_id=owner.device_id, prefetch_queue_depth=owner.settings["prefetch_depth"])
        if self.train:  # no DALI random operator: the feed draws
            self._feed = EpochFeed(self.split, owner.spec, o, drop_last=self.drop_last, first_epoch=self.epoch)
            self._next_epoch = self.epoch
            pipe = train_graph(self._feed, **common, feed_depth=owner.settings["prefetch_depth"], seed=o.seed,
                               py_num_workers=owner.settings["feed_workers"], py_start_method=owner.feed_start())
        else:
            pipe = eval_graph(list(self.split.paths), list(range(len(self.split))), shard_id=o.rank, num_shards=o.world_size, **common,
                              ten_crop=self.ten_crop, seed=o.seed)
        started = time.perf_counter()
        with forking_workers(self.train and owner.feed_started_by == "fork"):
            pipe.build()  # starts the training graph's feed workers
        owner.record_build(time.perf_counter() - started)
        if self.train:  # the feed ends the epoch itself (StopIteration); its batches are already whole or partial as asked
            return DALIGenericIterator([pipe], ["images", "indices", "means"], last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
        policy = LastBatchPolicy.DROP if self.drop_last else LastBatchPolicy.PARTIAL
        return DALIGenericIterator([pipe], ["images", "indices"], reader_name=READER, last_batch_policy=policy, auto_reset=True)

    def _start_pass(self) -> DALIGenericIterator:
        if not self.train:
            return self._iterator if self._iterator is not None else self._build()
        if self._iterator is not None and self._at_epoch_end and self.epoch == self._next_epoch:
            self._iterator.reset()  # DALI's epoch count goes up by one: the feed's next epoch
            return self._iterator
        self._iterator = None  # none yet, left mid-epoch, or not the next epoch: build (DALI cannot reset mid-epoch)
        return self._build()

    def iter_indexed(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """One pass as ``(images, labels, indices)``: ``indices`` are the samples' positions in the split."""
        if len(self) == 0:
            return
        try:
            iterator = self._start_pass()  # DALI runs the first batch here
        except RuntimeError as err:
            raise self.named_failure(err, 0) from err
        self._iterator, self._at_epoch_end = None, False
        owner = self.owner
        finished = False
        served = 0
        try:
            for [batch] in self._named_errors(iterator, lambda: served):
                served += 1
                indices = batch["indices"].view(-1).to(owner.device, dtype=torch.int64)
                images = batch["images"]
                if owner.uint8_output:  # uint8 on the host: pinned, copied without blocking, normalised on the device
                    means = batch["means"] if self.train else owner.eval_means.expand(images.shape[0], 3)
                    images = owner.normalise(images.pin_memory() if owner.device.type == "cuda" else images, means)
                else:
                    images = images.to(owner.device)
                yield images, self._labels[indices], indices
            finished = True
        finally:
            # A finished pass is kept: evaluation reuses it as is, training resets it for the next epoch.
            # A pass left early is dropped, and the next builds a new graph.
            if finished:
                self._iterator, self._at_epoch_end = iterator, True
                if self.train:
                    self._next_epoch += 1

    def _named_errors(self, iterator: DALIGenericIterator, served) -> Iterator:
        """DALI's batches, with ``named_failure`` on a failed decode."""
        batches = iter(iterator)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except RuntimeError as err:
                raise self.named_failure(err, served()) from err
            yield batch

    def named_failure(self, err: RuntimeError, batch: int) -> RuntimeError:
        """The training graph's external source carries no file name: a failed decode of sample ``#k``
        of batch ``batch`` (DALI counts within a batch) is given its file's path; other errors pass as they are."""
        found = re.search(r"Failed to decode sample #(\d+)", str(err))
        samples = self._feed.batch(self._next_epoch, batch) if self.train and self._feed is not None else []
        if not found or int(found.group(1)) >= len(samples):
            return err
        index = samples[int(found.group(1))]
        return RuntimeError(f"Failed to decode sample #{found.group(1)} of batch {batch}: {self.split.paths[index]}\n{err}")

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
        if self.settings["feed_workers"] < 1:
            raise UserError(f"--dali-feed-workers must be at least 1, not {self.settings['feed_workers']}")
        if self.settings["feed_start"] not in FEED_STARTS:
            raise ValueError(f"DALI option feed_start {self.settings['feed_start']!r} is not one of: {', '.join(FEED_STARTS)}")
        self.device = torch.device(options.device)
        self.decoder = choose_decoder(self.settings["decoder"], self.device)
        self.device_id = (self.device.index if self.device.index is not None else torch.cuda.current_device()) if self.decoder == "mixed" else None
        self.threads = options.workers or os.cpu_count() or 1
        # The CPU decoder feeding a GPU hands torch uint8 crops, normalised on the device (4x less
        # to copy, pinned); "uint8_output" in the options forces it (tests compare it on a CPU).
        self.uint8_output = self.decoder == "cpu" and (self.device.type == "cuda" or bool(self.settings["uint8_output"]))
        self.mean255 = torch.tensor([255.0 * m for m in spec.colour.mean], device=self.device)
        self.std255 = torch.tensor([255.0 * s for s in spec.colour.std], device=self.device).view(1, 3, 1, 1)
        self.eval_means = self.mean255.view(1, 3)
        self.build_seconds = 0.0
        self.builds = 0
        self.feed_started_by: str | None = None  # how the last training graph's feed workers were started

    def normalise(self, images: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x 3 x H x W`` (or ``N x 10 x 3 x H x W``) on the host to ``(x - mean) / std`` (0-255 units; ``means`` per image) on the device."""
        x = images.to(self.device, non_blocking=True).float()
        shape = (-1,) + (1,) * (x.dim() - 4) + (3, 1, 1)
        x -= means.to(self.device, non_blocking=True).view(shape)
        return x.div_(self.std255.view((1,) * (x.dim() - 3) + (3, 1, 1)))

    def feed_start(self) -> str:
        """How DALI starts the training feed's worker processes: ``fork`` (a fraction of a second) unless a
        CUDA driver is initialised in this process, where DALI refuses to fork; then ``spawn`` (each worker
        imports this package: a few seconds, once per graph build, counted in the build's one-off time)."""
        chosen = self.settings["feed_start"]
        self.feed_started_by = ("spawn" if IsDriverInitialized() else "fork") if chosen == "auto" else chosen
        return self.feed_started_by

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
            "feed_workers": self.settings["feed_workers"],
            "feed_started_by": self.feed_started_by,
            "output": "uint8, normalised by torch on the device" if self.uint8_output else "float, normalised by DALI",
            "pipeline_builds": self.builds,
            "dali_version": dali_version,
            "one_off_seconds": {"pipeline_build": self.build_seconds},
            "determinism": {
                "order": True,
                "augmentation": True,
                "note": "order and draws those of the torchvision pipeline, from (seed, epoch, sample index), fed through "
                "external_source: independent of threads, prefetch depth, batch size, world size and the decoder",
            },
        }
