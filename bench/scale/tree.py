"""A synthetic ImageFolder of N images, made fast enough to build 100,000 files in seconds.

Distinct images are rendered once (``DISTINCT`` small JPEGs, drawn by the embedded data's
own generator at ``SIDE`` pixels on the longer side) and their bytes are written again and
again: ``train/<class>/<i>.jpg`` for ``n`` training images over 1,000 classes and, as
ILSVRC-2012 has (50 k validation for 1.28 M training), one validation image per 25 training
images. Every file is a real, decodable JPEG, so the manifest scan decodes for real; but it
is small, so its decode is cheaper than an ImageNet JPEG's (about 400 x 350, 110 KB): the
measurement calibrates that with :func:`decode_ratio`.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.manifest import check_image
from bench.data.synthetic import SyntheticSpec, render

CLASSES = 1000
DISTINCT = 200
SIDE = 96  # the longer side of the small JPEGs
VAL_EVERY = 25  # ILSVRC-2012: 50,000 validation images for 1,281,167 training ones


def distinct_jpegs(count: int = DISTINCT, side: int = SIDE) -> list[bytes]:
    """``count`` different small JPEGs: the embedded generator's images, shrunk and re-encoded."""
    spec = SyntheticSpec(classes=10, seed=15)
    out = []
    for i in range(count):
        data, quality = render(spec, "train", i % 10, i)
        img = Image.open(io.BytesIO(data))
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def val_count(n: int) -> int:
    return max(1, n // VAL_EVERY)


def build_tree(root: Path, n: int, jpegs: list[bytes], classes: int = CLASSES) -> float:
    """Write ``n`` training and ``val_count(n)`` validation images under ``root``; returns the seconds it took."""
    started = time.perf_counter()
    for split, count in (("train", n), ("val", val_count(n))):
        names = [f"n{c:08d}" for c in range(classes)]
        for name in names:
            os.makedirs(root / split / name, exist_ok=True)
        for i in range(count):
            with open(root / split / names[i % classes] / f"{split}_{i:08d}.jpg", "wb") as f:
                f.write(jpegs[i % len(jpegs)])
    return time.perf_counter() - started


def decode_ratio(jpegs: list[bytes], folder: Path, samples: int = 40) -> dict:
    """How much longer the manifest's check takes on an ImageNet-sized JPEG than on the tree's small ones.

    ImageNet-sized: the embedded generator's images (about 500 x 375, quality 85-95), the
    closest thing to ILSVRC-2012's without downloading it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(classes=10, seed=15)
    big, small = [], []
    for i in range(samples):
        b = folder / f"big_{i}.jpg"
        b.write_bytes(render(spec, "train", i % 10, i)[0])
        s = folder / f"small_{i}.jpg"
        s.write_bytes(jpegs[i % len(jpegs)])
        big.append(str(b))
        small.append(str(s))

    def per_image(paths: list[str]) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for p in paths:
                check_image(p)
            times.append((time.perf_counter() - t) / len(paths))
        return float(np.median(times))

    small_s, big_s = per_image(small), per_image(big)
    return {"small_check_seconds": small_s, "imagenet_like_check_seconds": big_s, "ratio": big_s / small_s,
            "small_bytes_mean": float(np.mean([len(j) for j in jpegs])),
            "imagenet_like_bytes_mean": float(np.mean([os.path.getsize(p) for p in big]))}
