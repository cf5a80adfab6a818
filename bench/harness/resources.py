"""CPU time and memory of this process and its child processes (loader workers, decode pools)
over a block of code, sampled by a background thread with psutil.

- ``cpu_seconds``: user + system CPU time of every process of the tree during the block. A
  process that ends between two samples loses at most one interval of its time.
- ``peak_rss_bytes``: the largest sum of resident set sizes over the tree at any sample.
  Pages shared between processes (a forked worker's copy-on-write pages) count once per
  process, so this is an upper bound on the memory the tree holds.
- ``cuda_max_allocated_bytes``: ``torch.cuda.max_memory_allocated`` over the block on the first
  (input) device, on CUDA; ``cuda_max_allocated_bytes_by_device``: the same for every CUDA device
  watched (both towers' GPUs in model-parallel).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Sequence

import psutil
import torch

INTERVAL_S = 0.1


def available_cores() -> int:
    """CPU cores this process may run on (its affinity), which is what a pool of processes gets."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ResourceMonitor:
    """``with ResourceMonitor(device) as m: ...`` then ``m.result()``; ``device`` may be a list
    (the first is the input device), and each CUDA device's peak memory is recorded."""

    def __init__(self, device: torch.device | Sequence[torch.device] | None = None, *, interval_s: float = INTERVAL_S) -> None:
        devices = [] if device is None else [device] if isinstance(device, torch.device) else list(device)
        self.cuda_devices = [d for d in devices if d.type == "cuda"]
        self.device = devices[0] if devices else None
        self.interval_s = interval_s
        self._root = psutil.Process()
        self._first: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._peak_rss = 0
        self._samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall = 0.0

    def _sample(self, *, initial: bool = False) -> None:
        rss = 0
        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    key = (proc.pid, proc.create_time())
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            cpu = times.user + times.system
            # A process already running when the block starts counts from then; one born later, from its start.
            self._first.setdefault(key, cpu if initial else 0.0)
            self._last[key] = cpu
        self._peak_rss = max(self._peak_rss, rss)
        self._samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "ResourceMonitor":
        for d in self.cuda_devices:
            torch.cuda.reset_peak_memory_stats(d)
        psutil.cpu_percent(interval=None)  # start the machine-wide count here
        self._sample(initial=True)
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._wall = time.perf_counter() - self._start
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._system_percent = psutil.cpu_percent(interval=None)

    def result(self) -> dict:
        cpu = sum(self._last[k] - self._first[k] for k in self._last)
        cores = available_cores()
        busy = cpu / self._wall if self._wall > 0 else float("nan")
        out = {
            "wall_s": self._wall,
            "cpu_seconds": cpu,
            "cpu_cores_busy": busy,  # mean number of cores kept busy by this process tree
            "cpu_percent_of_available": 100.0 * busy / cores,
            "cores_available": cores,
            "machine_cpu_percent": self._system_percent,  # every process on the machine, ours included
            "peak_rss_bytes": self._peak_rss,
            "processes": len(self._last),
            "samples": self._samples,
            "cuda_max_allocated_bytes": None,
            "cuda_max_allocated_bytes_by_device": None,
        }
        if self.cuda_devices:
            peaks = {str(d): torch.cuda.max_memory_allocated(d) for d in self.cuda_devices}
            out["cuda_max_allocated_bytes_by_device"] = peaks
            if self.device.type == "cuda":
                out["cuda_max_allocated_bytes"] = peaks[str(self.device)]
        return out
