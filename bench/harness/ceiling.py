"""The decode ceiling: how fast the files a pipeline reads decode to RGB pixels with nothing
else done to them (no resize, crop, flip, lighting or normalisation), the limit a JPEG
pipeline works against on this machine.

- CPU: one process per available core, each reading files and decoding them, with PIL and
  with ``torchvision.io.decode_image`` (both libjpeg-turbo underneath); file reads (from the
  page cache after the warm-up pass) are included, as a loader has them too.
- GPU: nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")`` on batches of files
  already read into memory (reads excluded), JPEG files only.

The files are an even sample of the training split (every k-th file, ``ceiling_files``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.harness.execution import synchronize
from bench.harness.resources import ResourceMonitor, available_cores
from bench.harness.timing import summarise
from pipelines.lifetime import worker_pool
from pipelines.torchvision_pipeline import JPEG_MAGIC, TORCHVISION_CODEC_WARNING

CPU_DECODERS = ("pil", "torchvision.io")


def ceiling_files(paths: tuple[str, ...] | list[str], count: int) -> list[str]:
    """An even sample of ``count`` files: every k-th file of ``paths`` from the first, k = len // count."""
    step = max(1, len(paths) // count)
    return list(paths[::step][:count])


def _quiet_torchvision_codecs() -> None:
    warnings.filterwarnings("ignore", message=TORCHVISION_CODEC_WARNING, category=DeprecationWarning)


def _read(path: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)


def decode_file(decoder: str, path: str) -> int:
    """Read and decode one file to 8-bit RGB with ``decoder``; returns its pixel count."""
    if decoder == "pil":
        from PIL import Image

        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                img = img.convert("RGB")
            return img.width * img.height
    if decoder == "torchvision.io":
        from torchvision.io import ImageReadMode, decode_image

        with warnings.catch_warnings():
            _quiet_torchvision_codecs()
            pixels = decode_image(_read(path), mode=ImageReadMode.RGB)
        return int(pixels.shape[1] * pixels.shape[2])
    raise ValueError(f"unknown decoder {decoder!r}; choose from: {', '.join(CPU_DECODERS)}")


def _decode_chunk(decoder: str, paths: list[str]) -> int:
    return sum(decode_file(decoder, p) for p in paths)


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core; each decodes on one thread
    _quiet_torchvision_codecs()


def cpu_ceiling(paths: list[str], *, repeats: int, processes: int | None = None) -> dict:
    """Images/s decoding ``paths`` on ``processes`` processes (default: every available core), per decoder.

    Each decoder gets one untimed pass (process start-up, page cache), then ``repeats`` timed passes.
    """
    processes = processes or available_cores()
    parts = min(len(paths), processes * 4)  # a few tasks per process evens out the load
    chunks = [list(paths[i::parts]) for i in range(parts)]
    context = multiprocessing.get_context("spawn")  # no inherited threads or device state from the parent
    out: dict = {"processes": processes, "decoders": {}}
    start = time.perf_counter()
    with worker_pool(processes, mp_context=context, initializer=_worker_init) as pool:  # a run stopped by a signal leaves no decoder behind
        list(pool.map(_decode_chunk, ["pil"] * processes, [[paths[0]]] * processes))  # start every worker
        out["pool_start_s"] = time.perf_counter() - start
        for decoder in CPU_DECODERS:
            list(pool.map(_decode_chunk, [decoder] * len(chunks), chunks))  # warm-up pass
            rates = []
            with ResourceMonitor() as monitor:
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    pixels = sum(pool.map(_decode_chunk, [decoder] * len(chunks), chunks))
                    rates.append(len(paths) / (time.perf_counter() - t0))
            out["decoders"][decoder] = {
                "images_per_s": summarise(rates, "images/s"),
                "megapixels_per_image": pixels / len(paths) / 1e6,
                "resources": monitor.result(),
            }
    best = max(CPU_DECODERS, key=lambda d: out["decoders"][d]["images_per_s"]["median"])
    out["best_decoder"] = best
    out["images_per_s"] = out["decoders"][best]["images_per_s"]
    return out


def nvjpeg_ceiling(paths: list[str], *, repeats: int, device: torch.device, batch_size: int) -> dict:
    """Images/s of nvJPEG batch decoding (``torchvision.io.decode_jpeg``) of the JPEG files in ``paths``, already in memory."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [_read(p) for p in paths]
    data = [d for d in data if bytes(d[:2].tolist()) == JPEG_MAGIC]
    if not data:
        return {"skipped": "no JPEG files among the sampled files"}
    batches = [data[i : i + batch_size] for i in range(0, len(data), batch_size)]

    def one_pass() -> None:
        for batch in batches:
            decode_jpeg(batch, mode=ImageReadMode.RGB, device=device)

    with warnings.catch_warnings():
        _quiet_torchvision_codecs()
        one_pass()  # warm-up: nvJPEG handles, CUDA context, allocator
        synchronize(device)
        rates = []
        with ResourceMonitor(device) as monitor:
            for _ in range(repeats):
                synchronize(device)
                t0 = time.perf_counter()
                one_pass()
                synchronize(device)
                rates.append(len(data) / (time.perf_counter() - t0))
    return {
        "images_per_s": summarise(rates, "images/s"),
        "images": len(data),
        "batch_size": batch_size,
        "device": str(device),
        "includes_file_read": False,
        "resources": monitor.result(),
    }


def decode_ceiling(paths: list[str], *, repeats: int, device: torch.device, batch_size: int, root: str) -> dict:
    """The CPU ceiling, and the nvJPEG one on a CUDA device (else a reason it was skipped).

    The record names the files (relative to the dataset ``root``) so the ceiling can be checked
    against a separate measurement of the very same files.
    """
    sizes = [Path(p).stat().st_size for p in paths]
    out = {
        "files": len(paths),
        "selection": "every k-th file of the training split, k = its size // --ceiling-images",
        "paths": [os.path.relpath(p, root) for p in paths],
        "mean_file_bytes": float(np.mean(sizes)),
        "cpu": {**cpu_ceiling(paths, repeats=repeats), "includes_file_read": True},
    }
    if device.type == "cuda":
        out["nvjpeg"] = nvjpeg_ceiling(paths, repeats=repeats, device=device, batch_size=batch_size)
    else:
        out["nvjpeg"] = {"skipped": "no CUDA device in this run"}
    return out
