"""Any ImageFolder root as small images in memory, for the relu-tanh harness (Figure 1 on any labelled data).

``--data ROOT`` (``ROOT/train/<class>/<image>``, ``ROOT/val/<class>/<image>``, the layout every
harness reads): the files are listed and checked by ``bench.data.manifest`` exactly as for the
other harnesses (bad files left out with their reason, or an error under ``--strict``; the
manifest's fingerprint names the dataset). ``val/`` may be absent: the harness reports a training
error only. Every good image of ``train/`` (training) and of ``val/`` where there is one (kept as
the test split) is decoded with PIL, converted to RGB (grayscale becomes
three equal channels), its shorter side resized to ``size`` (32 for the CIFAR nets; PIL's
bilinear filter, antialiased when shrinking) and centre-cropped to ``size`` x ``size``: the
paper's 256-px rule at CIFAR's size. The arrays are cached under
``cache_dir/small-images/<manifest fingerprint>-<size>.npz``, so a dataset is decoded once.
"""

from __future__ import annotations

import io
import os
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.atomic import atomic_write_bytes
from bench.data.manifest import Manifest, load_manifest
from bench.errors import UserError
from pipelines.lifetime import worker_pool

CACHE_VERSION = 1


def load_small(path: str, size: int) -> np.ndarray:
    """One image as ``size x size x 3`` uint8: RGB, shorter side to ``size``, centre crop."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _decode_all(paths: tuple[str, ...], size: int, workers: int, progress: bool, desc: str) -> np.ndarray:
    load = partial(load_small, size=size)
    bar = dict(total=len(paths), desc=desc, unit="img", disable=None if progress else True, mininterval=1.0, leave=False)
    if workers <= 1 or len(paths) < 256:
        images = [load(p) for p in tqdm(paths, **bar)]
    else:
        with worker_pool(workers) as pool:
            images = list(tqdm(pool.map(load, paths, chunksize=256), **bar))
    return np.stack(images) if images else np.empty((0, size, size, 3), np.uint8)


def read_small_arrays(manifest: Manifest, size: int, cache_dir: str | os.PathLike, *, workers: int, progress: bool) -> dict[str, np.ndarray]:
    """``train_images``, ``train_labels``, ``test_images``, ``test_labels`` of the manifest's good files, from the cache when there."""
    cache = Path(cache_dir) / "small-images" / f"{manifest.fingerprint}-{size}-v{CACHE_VERSION}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache entry is rebuilt below
    arrays: dict[str, np.ndarray] = {}
    for split, key in (("train", "train"), ("val", "test")):
        part = manifest.split(split)
        arrays[f"{key}_images"] = _decode_all(part.paths, size, workers, progress, f"{split} at {size} px")
        arrays[f"{key}_labels"] = np.asarray(part.labels, dtype=np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(cache, buffer.getvalue())
    return arrays


def open_small_folder(root: str | os.PathLike, cache_dir: str | os.PathLike, *, size: int, strict: bool, max_pixels: int,
                      workers: int, progress: bool):
    """The ImageFolder at ``root`` as ``ImageArrays`` of ``size``-px images (imported here: ``bench.data.cifar`` owns the type)."""
    from bench.data.cifar import ImageArrays

    manifest = load_manifest(root, cache_dir, workers=workers, progress=progress, max_pixels=max_pixels, required=("train",))
    bad = manifest.bad()
    if strict and bad:
        raise UserError(f"--strict: {len(bad)} bad file(s) in {manifest.root}; the first is {bad[0].path}: {bad[0].reason}")
    arrays = read_small_arrays(manifest, size, cache_dir, workers=workers, progress=progress)
    return ImageArrays(
        name=Path(manifest.root).name,
        classes=manifest.classes,
        source=f"{manifest.root} (ImageFolder; every image RGB, shorter side to {size} px, centre crop)",
        official=False,
        manifest_fingerprint=manifest.fingerprint,
        bad=tuple({"path": e.path, "reason": e.reason} for e in bad),
        **arrays,
    )
