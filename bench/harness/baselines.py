"""Stock baselines: the loader-only rate of the stock training loader of the pipeline's own
library (``pipelines.stock``), measured in the same run, on the same files, batch size,
workers and device, with the same protocol as our loader-only phase; and our rate divided by
it. A user sees what the paper's augmentation, driven our way, costs against what they would
otherwise use.
"""

from __future__ import annotations

import time

import torch

from bench.harness.stream import BatchStream, loader_only_phase
from pipelines.base import Split


def measure_stock(pipeline: str, split: Split, *, crop: int, batch_size: int, workers: int, seed: int, device: torch.device,
                  cache_dir: str, protocol, boundary=None, progress: bool = False) -> dict:
    """``{"name", "reproduces", "loader_only", "one_off_seconds", ...}`` for ``pipeline``'s library, or
    ``{"name", "skipped": why}`` when it has no stock loader or cannot run here (a missing library)."""
    from pipelines import stock  # noqa: PLC0415 - imported only when baselines are asked for

    if pipeline not in stock.STOCK:
        return {"name": pipeline, "skipped": f"no stock loader for {pipeline!r} (known: {', '.join(stock.stock_names())})"}
    started = time.perf_counter()
    try:
        loader = stock.build(pipeline, split, crop=crop, batch_size=batch_size, workers=workers, seed=seed, device=device, cache_dir=cache_dir)
    except ImportError as err:
        return {"name": pipeline, "reproduces": stock.describe(pipeline), "skipped": f"cannot be built here: {err}"}
    built = time.perf_counter() - started
    try:
        if len(loader) == 0:
            return {"name": pipeline, "reproduces": stock.describe(pipeline), "skipped": "the split gives no full batch"}
        batches = BatchStream(loader)
        started = time.perf_counter()
        next(batches)
        first = time.perf_counter() - started
        phase = loader_only_phase(batches, warmup=protocol.warmup_batches, steps=protocol.loader_batches_per_repeat, repeats=protocol.repeats,
                                  device=device, boundary=boundary, progress=progress, desc=f"stock {pipeline}")
    finally:
        loader.close()
    return {"name": pipeline, "reproduces": stock.describe(pipeline), "loader_only": phase, **(loader.info or {}),
            "one_off_seconds": {"build_loader_s": built, "first_batch_s": first}}


def ratio_to_stock(ours: float, baseline: dict) -> float | None:
    """Our loader-only median over the stock one (above 1: ours is faster); None when the baseline was skipped."""
    if "loader_only" not in baseline:
        return None
    return ours / baseline["loader_only"]["images_per_s"]["median"]
