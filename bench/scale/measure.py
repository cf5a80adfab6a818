"""Each start-up cost of one dataset root, measured once: what a user waits for before the first batch.

- ``walk``: listing every file with its size and time, and the fingerprint (every run pays it);
- ``scan``: the manifest's first check, decoding every file on every core (once per dataset);
- ``reload``: loading the cached manifest (every run; includes the walk); walk and reload are
  the median of ``REPEATS`` timings, measured after the scan (so the file system's metadata is cached);
- ``manifest_bytes`` on disk and ``manifest_memory_bytes`` in memory (tracemalloc, Python objects);
- per pipeline, construction to first batch (``first_batch``; FFCV's without its conversion,
  which is projected on its own, over the cores), with FFCV's conversion and compile and
  DALI's file list apart;
- ``worker_private_bytes``: memory private to each torchvision loader worker after its first
  batch (USS from ``/proc/<pid>/smaps_rollup``): what per-sample Python objects copied into
  every worker cost.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import psutil

from bench.data.manifest import DEFAULT_MAX_PIXELS, _list_files, fingerprint, load_manifest
from pipelines.base import PipelineOptions
from pipelines.registry import available_pipelines, create_pipeline
from pipelines.spec import AugmentSpec

BATCH = 32
REPEATS = 3  # the walk and the reload are timed this many times, median kept (the scan and the first batches are one-off: once)


def _private_bytes(pid: int) -> int | None:
    """Unique set size of ``pid``: its pages no other process shares."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return sum(int(fields[k].split()[0]) * 1024 for k in ("Private_Clean", "Private_Dirty"))
    except (OSError, KeyError, ValueError):
        return None


def _workers_private() -> list[int]:
    return [b for b in (_private_bytes(c.pid) for c in psutil.Process().children(recursive=True)) if b is not None]


def _median_seconds(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure_manifest(root: Path, cache: Path, workers: int) -> dict:
    out: dict = {}
    t = time.perf_counter()
    manifest = load_manifest(root, cache, workers=workers, progress=False)
    out["scan"] = time.perf_counter() - t
    del manifest

    def walk() -> None:
        classes, listed = _list_files(root.resolve())
        fingerprint(classes, listed, DEFAULT_MAX_PIXELS)

    out["walk"] = _median_seconds(walk)
    out["reload"] = _median_seconds(lambda: load_manifest(root, cache, progress=False))
    manifest = load_manifest(root, cache, progress=False)
    out["manifest_bytes"] = (cache / "manifests" / f"{manifest.fingerprint}.json").stat().st_size
    del manifest
    tracemalloc.start()
    manifest = load_manifest(root, cache, progress=False)
    out["manifest_memory_bytes"], _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out


def measure_pipeline(name: str, root: Path, cache: Path, workers: int) -> dict:
    """Seconds from construction to the first training batch, with the one-off parts apart."""
    manifest = load_manifest(root, cache, progress=False)
    split = manifest.split("train")
    extra = {"write_mode": "jpg", "compile": True} if name == "ffcv" else {}
    options = PipelineOptions(batch_size=BATCH, workers=workers, cache_dir=str(cache), extra=extra)
    out: dict = {}
    t = time.perf_counter()
    pipeline = create_pipeline(name, AugmentSpec(), options)
    loader = pipeline.train_loader(split)
    it = iter(loader)
    next(it)
    out["first_batch"] = time.perf_counter() - t
    if name == "torchvision":
        private = _workers_private()
        out["worker_private_bytes"] = max(private) if private else None
    one_off = pipeline.describe().get("one_off_seconds") or {}
    for what in ("conversion", "compile"):
        if what in one_off:
            out[what] = one_off[what]
    if "conversion" in out:  # projected on its own, over the cores: first_batch is the rest
        out["first_batch"] -= out["conversion"]
    del it
    close = getattr(loader, "close", None)
    if close:
        close()
    return out


def installed(requested: list[str]) -> tuple[list[str], list[str]]:
    have = set(available_pipelines())
    return [p for p in requested if p in have], [p for p in requested if p not in have]


def measure_size(root: Path, cache: Path, pipelines: list[str], workers: int) -> dict:
    costs = measure_manifest(root, cache, workers)
    for name in pipelines:
        for what, value in measure_pipeline(name, root, cache, workers).items():
            costs[f"{name}.{what}"] = value
    return costs
