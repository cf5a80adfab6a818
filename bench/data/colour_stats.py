"""The training set's colour statistics for normalisation and the paper's PCA lighting.

Per-channel mean and std, and the eigen-decomposition of the 3x3 RGB covariance, of pixels
in [0, 1] after the paper's preprocessing (shorter side 256, central square), from an evenly
spaced sample of the training images. Cached per manifest fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.atomic import atomic_write_json
from bench.data.manifest import Manifest
from pipelines.spec import ColourStats
from pipelines.torchvision_pipeline import load_rgb, preprocess

STATS_VERSION = 1


def compute_colour_stats(manifest: Manifest, *, max_images: int = 500, resize: int = 256, progress: bool = True) -> ColourStats:
    split = manifest.split("train")
    step = max(1, len(split) // max_images)
    paths = split.paths[::step][:max_images]
    total = np.zeros(3)
    outer = np.zeros((3, 3))
    count = 0
    for path in tqdm(paths, desc="colour statistics", unit="img", disable=None if progress else True, mininterval=1.0):
        x = preprocess(load_rgb(path), resize).numpy().reshape(3, -1)[:, ::4].astype(np.float64) / 255.0
        total += x.sum(axis=1)
        outer += x @ x.T
        count += x.shape[1]
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    # Fix each eigenvector's sign (the largest component positive) so the result is reproducible.
    signs = np.sign(eigvec[np.abs(eigvec).argmax(axis=0), range(3)])
    eigvec = eigvec * signs
    return ColourStats(
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in np.sqrt(np.diag(cov))),
        eigval=tuple(float(max(v, 0.0)) for v in eigval),
        eigvec=tuple(tuple(float(v) for v in row) for row in eigvec),
        source=f"computed:{manifest.fingerprint}",
    )


def load_colour_stats(manifest: Manifest, cache_dir: str | Path, *, progress: bool = True) -> ColourStats:
    """``compute_colour_stats`` once per dataset version, cached beside the manifest."""
    cache_file = Path(cache_dir) / "colour" / f"{manifest.fingerprint}-v{STATS_VERSION}.json"
    if cache_file.is_file():
        try:
            return ColourStats.from_dict(json.loads(cache_file.read_text()))
        except (ValueError, KeyError, TypeError):
            pass
    stats = compute_colour_stats(manifest, progress=progress)
    atomic_write_json(cache_file, {"mean": stats.mean, "std": stats.std, "eigval": stats.eigval, "eigvec": stats.eigvec, "source": stats.source})
    return stats
