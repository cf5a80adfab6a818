"""The embedded default dataset: ImageNet-like JPEGs generated from a seed, no download.

Each class is an object (an ellipse filled with a grating) of its own hue and grating
orientation, at a random place and scale, over a smooth random background with noise, so
the class signal is there but never pixel-identical. Images are about 500x375 (some
portrait), JPEG at quality 85-95, in ImageFolder layout. The same ``SyntheticSpec`` always
gives byte-identical files; the dataset is generated once per spec into the cache and
published by an atomic rename, so an interrupted generation leaves nothing a later run would use.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipelines.lifetime import worker_pool

GENERATOR_VERSION = 1
SPLITS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class SyntheticSpec:
    classes: int = 10
    train_per_class: int = 260
    val_per_class: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"the embedded dataset needs at least 2 classes, not {self.classes}")
        if self.train_per_class < 1 or self.val_per_class < 1:
            raise ValueError("the embedded dataset needs at least 1 image per class in each split")

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def class_name(label: int) -> str:
    return f"class_{label:03d}"


def render(spec: SyntheticSpec, split: str, label: int, index: int) -> tuple[bytes, int]:
    """One JPEG of class ``label``; returns its bytes and quality. Pure function of its arguments."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, SPLITS[split], label, index, GENERATOR_VERSION]))
    w = int(np.clip(rng.normal(500, 40), 380, 640))
    h = int(np.clip(rng.normal(375, 30), 280, 480))
    if rng.random() < 0.15:
        w, h = h, w
    # Smooth background: a random low-resolution colour field, upsampled.
    coarse = rng.uniform(0, 255, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    bg = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32)
    # The object: an ellipse with a grating at the class's orientation, in the class's hue.
    hue = (label / spec.classes + rng.normal(0, 0.015)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0)), dtype=np.float32) * 255
    theta = np.pi * label / spec.classes + rng.normal(0, 0.05)
    period = rng.uniform(10, 24)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.25, 0.45) * h, rng.uniform(0.25, 0.45) * w
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    grating = 0.5 + 0.5 * np.cos(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
    obj = colour[None, None, :] * (0.35 + 0.65 * grating[..., None])
    img = np.where(inside[..., None], obj, bg)
    img += rng.normal(0, 8, size=img.shape).astype(np.float32)
    quality = int(rng.integers(85, 96))
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    from io import BytesIO

    buf = BytesIO()
    out.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), quality


def _write_one(args: tuple[SyntheticSpec, str, int, int, str]) -> None:
    spec, split, label, index, root = args
    data, _ = render(spec, split, label, index)
    path = Path(root, split, class_name(label), f"{split}_{label:03d}_{index:05d}.jpg")
    path.write_bytes(data)


def default_cache_dir() -> Path:
    return Path(os.environ.get("ALEXNET_BENCH_CACHE", Path.home() / ".cache" / "alexnet-bench"))


def ensure_synthetic(spec: SyntheticSpec, cache_dir: Path, *, workers: int | None = None, progress: bool = True) -> Path:
    """The dataset's root for ``spec``, generating it first if it is not in ``cache_dir``."""
    final = Path(cache_dir) / "datasets" / f"embedded-{spec.key()}"
    if (final / "DATASET.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        jobs = []
        for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
            for label in range(spec.classes):
                (tmp / split / class_name(label)).mkdir(parents=True)
                jobs += [(spec, split, label, i, str(tmp)) for i in range(per_class)]
        workers = workers or os.cpu_count() or 1
        with worker_pool(workers) as pool:
            for _ in tqdm(
                pool.map(_write_one, jobs, chunksize=16),
                total=len(jobs),
                desc="generating embedded dataset",
                unit="img",
                disable=None if progress else True,
            ):
                pass
        (tmp / "DATASET.json").write_text(json.dumps({"generator": "alexnet-bench embedded", "version": GENERATOR_VERSION, **asdict(spec)}, indent=2))
        try:
            os.rename(tmp, final)
        except OSError:  # another process published it first: theirs is identical
            if not (final / "DATASET.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
