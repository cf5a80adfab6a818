"""A split's samples written to an FFCV ``.beton`` file, once per dataset and set of options.

What is stored (``ConversionOptions``):

- ``resize_rule="paper"`` (the default): the paper's preprocessing, done here once with the
  torchvision pipeline's own ``load_rgb`` and ``preprocess`` (EXIF orientation applied,
  shorter side to 256 with antialiased bilinear resampling, central 256 x 256 square), so
  the stored pixels are the ones that pipeline computes on every use.
- ``resize_rule="max-side"``: the image as it is, its longer side capped at ``max_side``
  (FFCV's ``max_resolution``, OpenCV's area resampling); the loader then does the paper's
  preprocessing with FFCV's ``CenterCropRGBImageDecoder`` (central square, resized to 256
  with OpenCV's area resampling: close to, not the same as, PIL's).
- ``write_mode``: ``"raw"`` (FFCV's own: uint8 pixels, exact, 192 KiB an image at
  256 x 256, so 235 GiB for ImageNet's training set; a conversion that cannot fit on the
  cache's disk is refused before it starts), ``"jpg"`` (JPEG at ``jpeg_quality``, encoded by
  OpenCV with 4:2:0 chroma, decoded by libjpeg-turbo: about 8x smaller, lossy) or ``"auto"``
  (the run's default, :func:`choose_storage`): a ``.beton`` of this split already in the
  cache in either mode is reused; otherwise raw when it takes at most ``RAW_DISK_SHARE`` of
  the free disk, else JPEG (at the paper's 256 px and quality 90 unless told otherwise), and
  one line says which and why.

The file is kept under ``<cache_dir>/ffcv/`` with a name made of the split's name and a
key hashing the manifest's fingerprint, the split's samples, the options and the versions
of this code and of FFCV: an unchanged dataset is never converted twice, and any change
gives a new file. A conversion writes to a temporary name in the same folder and renames
it when complete, under a lock file, so an interrupted conversion (even by SIGKILL) leaves
nothing a later run takes as complete, and runs started together (one per rank) convert
once and share the result. A later conversion removes what an interrupted one left.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import multiprocessing
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.atomic import atomic_path, remove_leftovers
from bench.config import FFCV_RESIZE_RULES, FFCV_WRITE_MODES
from bench.errors import UserError
from pipelines.base import Split
from pipelines.torchvision_pipeline import load_rgb, preprocess

CONVERT_VERSION = 1
MIN_PAGE_SIZE = 8 << 20  # FFCV's default page: 8 MiB
RAW_DISK_SHARE = 0.5  # write_mode="auto" stores raw pixels only when they take at most this share of the free disk


@dataclass(frozen=True)
class ConversionOptions:
    """How a split is stored; every field is part of the cache key (``max_side`` only for ``max-side``)."""

    write_mode: str = "raw"
    jpeg_quality: int = 90
    resize_rule: str = "paper"
    max_side: int = 512  # the longer side's cap under resize_rule="max-side"
    resize: int = 256  # the paper's shorter side (the spec's resize) under resize_rule="paper"

    def __post_init__(self) -> None:
        if self.write_mode not in FFCV_WRITE_MODES:
            raise ValueError(f"write_mode {self.write_mode!r} is not one of: {', '.join(FFCV_WRITE_MODES)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], not {self.jpeg_quality}")
        if self.resize_rule not in FFCV_RESIZE_RULES:
            raise ValueError(f"resize_rule {self.resize_rule!r} is not one of: {', '.join(FFCV_RESIZE_RULES)}")
        if self.resize_rule == "max-side" and not self.resize <= self.max_side <= 16384:
            raise ValueError(f"max_side must be in [{self.resize}, 16384], not {self.max_side}")

    def relevant(self) -> dict:
        """The options that change the stored bytes (the cache key and the record hold these)."""
        if self.write_mode == "auto":
            raise ValueError("write_mode 'auto' must be resolved by choose_storage() before it names a file")
        d = asdict(self)
        if self.write_mode == "raw":
            del d["jpeg_quality"]
        del d["max_side" if self.resize_rule == "paper" else "resize"]
        return d

    def describe(self) -> str:
        how = f"JPEG q{self.jpeg_quality}" if self.write_mode == "jpg" else "raw pixels"
        size = f"{self.resize}x{self.resize}" if self.resize_rule == "paper" else f"longer side <= {self.max_side}"
        return f"{how}, {size}"

    def raw_bytes(self, samples: int) -> int | None:
        """What ``samples`` images take stored raw under the paper's rule (None when not known in advance)."""
        if self.write_mode != "raw" or self.resize_rule != "paper":
            return None
        return samples * self.resize * self.resize * 3

    def page_size(self) -> int:
        """A page must hold the largest sample: FFCV's 8 MiB, or more for big raw images."""
        side = self.resize if self.resize_rule == "paper" else self.max_side
        largest = 2 * side * side * 3  # raw pixels, with room for a JPEG larger than them
        return max(MIN_PAGE_SIZE, 1 << (largest - 1).bit_length())


def cache_key(split: Split, options: ConversionOptions) -> str:
    blob = json.dumps(
        {
            "convert_version": CONVERT_VERSION,
            "ffcv": version("ffcv"),
            "fingerprint": split.fingerprint,
            "split": split.name,
            "options": options.relevant(),
            "samples": hashlib.sha256(json.dumps([split.paths, split.labels]).encode()).hexdigest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def beton_path(cache_dir: str | Path, split: Split, options: ConversionOptions) -> Path:
    """Where the ``.beton`` of ``split`` stored with ``options`` lives."""
    return Path(cache_dir) / "ffcv" / f"{split.name}-{split.fingerprint}-{cache_key(split, options)}.beton"


class _SplitImages:
    """The split as FFCV's writer reads it: ``(uint8 H x W x 3, label)`` per index.

    Runs in the writer's worker processes, where an exception would leave the writer waiting
    for ever; so a file that fails to read gives a blank image and its index is recorded in
    ``failed`` (shared memory), and the conversion is refused afterwards.
    """

    def __init__(self, split: Split, options: ConversionOptions, failed: "multiprocessing.sharedctypes.Synchronized") -> None:
        self.paths = split.paths
        self.labels = split.labels
        self.options = options
        self.failed = failed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        size = self.options.resize
        try:
            img = load_rgb(self.paths[index])
            if self.options.resize_rule == "paper":
                # preprocess gives a C x H x W view of PIL's H x W x C pixels: no torch compute in this forked worker
                pixels = np.ascontiguousarray(preprocess(img, size).permute(1, 2, 0).numpy())
            else:
                pixels = np.asarray(img)
        except Exception:  # noqa: BLE001 - reported with its reason by the parent, see convert()
            with self.failed.get_lock():
                if self.failed.value < 0:
                    self.failed.value = index
            pixels = np.zeros((size, size, 3), dtype=np.uint8)
        return pixels, self.labels[index]


@contextmanager
def _progress_bar(desc: str, enabled: bool) -> Iterator[None]:
    """FFCV's writer draws its own tqdm bar: give it a description; shown on a terminal only (as every bar here), never when disabled."""
    import ffcv.writer

    original = ffcv.writer.tqdm
    ffcv.writer.tqdm = functools.partial(original, desc=desc, unit="img", disable=None if enabled else True, mininterval=1.0)
    try:
        yield
    finally:
        ffcv.writer.tqdm = original


def _reason(path: str) -> str:
    try:
        load_rgb(path)
    except Exception as err:  # noqa: BLE001 - the reason is reported to the user
        return f"{type(err).__name__}: {err}".replace("\n", " ")
    return "it could not be read during the conversion"


def convert(split: Split, path: Path, options: ConversionOptions, *, workers: int = 1, progress: bool = True) -> None:
    """Write ``split`` to ``path`` (atomically: a temporary file in the same folder, renamed when complete)."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    failed = multiprocessing.Value("q", -1)
    fields = {
        "image": RGBImageField(
            write_mode=options.write_mode,
            jpeg_quality=options.jpeg_quality,
            max_resolution=options.max_side if options.resize_rule == "max-side" else None,
        ),
        "label": IntField(),
    }
    with atomic_path(path) as tmp:
        writer = DatasetWriter(str(tmp), fields, page_size=options.page_size(), num_workers=max(1, workers))
        with _progress_bar(f"converting {split.name} to .beton ({options.describe()})", progress):
            writer.from_indexed_dataset(_SplitImages(split, options, failed), chunksize=32)
        if failed.value >= 0:
            bad = split.paths[failed.value]
            raise UserError(f"cannot convert {bad} for FFCV: {_reason(bad)}")


def _check_space(split: Split, options: ConversionOptions, folder: Path) -> None:
    """Refuse a raw conversion that cannot fit, before it starts rather than when the disk is full."""
    needed = options.raw_bytes(len(split))
    if needed is None:
        return
    needed = int(needed * 1.02) + options.page_size()  # page padding, metadata
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise UserError(
            f"converting {split.name} ({len(split)} images) to raw pixels for FFCV needs {needed / 2**30:.1f} GiB in {folder}, "
            f"which has {free / 2**30:.1f} GiB free: store JPEG instead (--ffcv-write-mode jpg, about 8x smaller) or use another --cache-dir"
        )


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (released by the kernel if this process dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class StorageChoice:
    """What ``write_mode="auto"`` chose for a split, and the one line that says why."""

    options: ConversionOptions  # resolved: write_mode is "raw" or "jpg"
    line: str

    def describe(self) -> dict:
        return {"requested": "auto", "chosen": self.options.write_mode, "raw_disk_share": RAW_DISK_SHARE, "line": self.line}


def choose_storage(split: Split, options: ConversionOptions, cache_dir: str | Path, *, free: int | None = None) -> StorageChoice:
    """Resolve ``write_mode="auto"`` for ``split``: an existing ``.beton`` in either mode, else raw
    when it fits in ``RAW_DISK_SHARE`` of the free disk (``free`` bytes, measured when None), else JPEG."""
    raw, jpg = replace(options, write_mode="raw"), replace(options, write_mode="jpg")
    for candidate in (raw, jpg):
        if beton_path(cache_dir, split, candidate).is_file():
            return StorageChoice(candidate, f"FFCV storage: {candidate.describe()}, converted earlier (--ffcv-write-mode auto)")
    folder = Path(cache_dir) / "ffcv"
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free if free is None else free
    needed = raw.raw_bytes(len(split))
    if needed is not None and needed <= RAW_DISK_SHARE * free:
        return StorageChoice(raw, f"FFCV storage: {raw.describe()} ({needed / 2**30:.1f} GiB, at most {RAW_DISK_SHARE:.0%} of the "
                                  f"{free / 2**30:.1f} GiB free in {folder}; --ffcv-write-mode auto)")
    why = ("raw size is not known in advance under --ffcv-resize-rule max-side" if needed is None else
           f"raw pixels would need {needed / 2**30:.1f} GiB, more than {RAW_DISK_SHARE:.0%} of the {free / 2**30:.1f} GiB free in {folder}")
    return StorageChoice(jpg, f"FFCV storage: {jpg.describe()} for {split.name} ({len(split)} images): {why} "
                              "(--ffcv-write-mode raw to insist)")


@dataclass(frozen=True)
class Beton:
    path: Path
    converted: bool  # False: an earlier conversion was reused
    seconds: float  # spent converting (0 when reused)
    choice: StorageChoice | None = None  # set when write_mode was "auto"


def ensure_beton(split: Split, options: ConversionOptions, cache_dir: str | Path, *, workers: int = 1, progress: bool = True) -> Beton:
    """The ``.beton`` of ``split`` with ``options``, converting it first unless it is already in ``cache_dir``.

    ``write_mode="auto"`` is resolved by :func:`choose_storage` under a lock held until the file
    is complete, so processes started together (ranks) choose the same storage and convert once.
    """
    if not split.paths:
        raise UserError(f"the {split.name} split has no images to convert for FFCV")
    if options.write_mode == "auto":
        with _locked(Path(cache_dir) / "ffcv" / f"{split.name}-{split.fingerprint}-auto.lock"):
            choice = choose_storage(split, options, cache_dir)
            return replace(ensure_beton(split, choice.options, cache_dir, workers=workers, progress=progress), choice=choice)
    path = beton_path(cache_dir, split, options)
    if path.is_file():
        return Beton(path, False, 0.0)
    with _locked(path.with_name(path.name + ".lock")):
        if path.is_file():  # another process converted it while this one waited
            return Beton(path, False, 0.0)
        remove_leftovers(path)  # what a killed conversion left
        _check_space(split, options, path.parent)
        started = time.perf_counter()
        convert(split, path, options, workers=workers, progress=progress)
        return Beton(path, True, time.perf_counter() - started)
