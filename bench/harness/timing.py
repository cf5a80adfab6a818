"""The measurement protocol (timm's ``benchmark.py``): warm-up excluded, repeated timed runs,
the device synchronised at every timing boundary, the median and the spread kept, every
number with its unit."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from bench.harness.execution import synchronize
from bench.harness.resources import ResourceMonitor

TIMER = "time.perf_counter"


def summarise(values: list[float], unit: str) -> dict:
    """Median and spread of repeated measurements: min/max and the interquartile range (numpy's linear percentiles)."""
    if not values:
        raise ValueError("nothing to summarise")
    q1, median, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return {
        "unit": unit,
        "median": median,
        "min": float(min(values)),
        "max": float(max(values)),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "values": [float(v) for v in values],
    }


@dataclass(frozen=True)
class Repeat:
    images: int
    seconds: float


def run_phase(
    work: Callable[[], int],
    *,
    warmup: int,
    steps: int,
    repeats: int,
    device: torch.device,
    devices: Sequence[torch.device] = (),
    boundary: Callable[[], None] | None = None,
    progress: bool = False,
    desc: str = "",
    before_repeat: Callable[[], None] | None = None,
) -> dict:
    """Call ``work`` (one batch or step; returns the images it handled) ``warmup`` times untimed,
    then ``repeats`` times ``steps`` times, timing each repeat between two ``boundary`` calls
    (default: synchronise ``device``); CPU and memory are watched over the timed repeats only,
    GPU memory on ``device`` and on each of ``devices`` (the mode's, e.g. both towers' GPUs).
    ``before_repeat`` runs before each repeat, untimed (e.g. starting a loader's next epoch there)."""
    boundary = boundary or (lambda: synchronize(device))
    bar = tqdm(total=warmup + steps * repeats, desc=desc, unit="batch", disable=not progress, leave=False, mininterval=1.0)
    try:
        for _ in range(warmup):
            work()
            bar.update()
        boundary()
        timed: list[Repeat] = []
        with ResourceMonitor(list(dict.fromkeys([device, *devices]))) as monitor:
            for _ in range(repeats):
                if before_repeat is not None:
                    before_repeat()
                boundary()
                start = time.perf_counter()
                images = 0
                for _ in range(steps):
                    images += work()
                    bar.update()
                boundary()
                timed.append(Repeat(images, time.perf_counter() - start))
    finally:
        bar.close()
    return phase_result(timed, warmup=warmup, steps=steps, resources=monitor.result())


def phase_result(timed: Sequence[Repeat], *, warmup: int, steps: int, resources: dict) -> dict:
    """A phase's record: the rate of each timed repeat and their median and spread."""
    return {
        "images_per_s": summarise([r.images / r.seconds for r in timed], "images/s"),
        "repeats": [{"images": r.images, "seconds": r.seconds} for r in timed],
        "warmup_batches": warmup,
        "batches_per_repeat": steps,
        "resources": resources,
    }
