"""The embedded CIFAR-sized default: 32x32 RGB images of 10 classes generated from a seed, no download.

Each image is a disc filled with a grating over a smooth random background with noise. The
class is the grating's orientation (class c at c/classes of a half turn); its colour,
period, phase, place and size are random, so colour alone says nothing and a network has
to learn oriented filters, as on natural images. The same spec always gives the same
arrays (generated in memory in about a second; nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

GENERATOR_VERSION = 1
SIZE = 32


@dataclass(frozen=True)
class SmallSyntheticSpec:
    classes: int = 10
    train_per_class: int = 260
    test_per_class: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"the embedded CIFAR-sized data needs at least 2 classes, not {self.classes}")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise ValueError("the embedded CIFAR-sized data needs at least 1 image per class in each split")


def render(rng: np.random.Generator, label: int, classes: int) -> np.ndarray:
    """One 32x32x3 uint8 image of class ``label``, drawn from ``rng``."""
    coarse = rng.integers(0, 256, size=(3, 3, 3), dtype=np.uint8)
    background = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    theta = np.pi * label / classes + rng.normal(0.0, 0.04)
    period = rng.uniform(4.0, 7.0)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * SIZE
    radius = rng.uniform(0.25, 0.45) * SIZE
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    grating = 0.5 + 0.5 * np.cos(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
    colour = rng.uniform(0, 255, size=3).astype(np.float32)
    image = np.where(inside[..., None], colour * (0.3 + 0.7 * grating[..., None]), background)
    image += rng.normal(0.0, 10.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate_split(spec: SmallSyntheticSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images N x 32 x 32 x 3 uint8, labels N int64)`` of ``split`` ("train" or "test"), classes interleaved."""
    per_class = spec.train_per_class if split == "train" else spec.test_per_class
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, GENERATOR_VERSION, 0 if split == "train" else 1]))
    labels = np.tile(np.arange(spec.classes, dtype=np.int64), per_class)
    images = np.stack([render(rng, int(label), spec.classes) for label in labels])
    return images, labels
