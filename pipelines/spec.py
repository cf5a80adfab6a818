"""The augmentation, specified once; every pipeline implements this spec.

The paper (section 4.1): images are rescaled so the shorter side is 256 and the central
256x256 patch is kept; training takes random crops (224, or 227 for the unpadded net) with
horizontal reflection, and adds PCA lighting

    shift = sum_i p_i * (alpha_i * lambda_i),   alpha_i ~ N(0, sigma), sigma = 0.1

to every pixel, with p_i, lambda_i the eigenvectors/values of the 3x3 RGB covariance of the
training set (pixels in [0, 1] here), drawn once per image each time it is used. Testing
averages 10 views: the four corner crops, the centre crop, and their reflections.

``eigvec`` is stored as the 3x3 matrix whose *columns* are the eigenvectors (p_i =
eigvec[:, i]), the layout of the commonly used ImageNet constants below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def centre_start(length: int, size: int) -> int:
    """Where the central ``size`` pixels of ``length`` start: ``round((length - size) / 2)``,
    Python's round (halves to even), as torchvision's ``center_crop``. Every pipeline cuts the
    paper's central square by this rule."""
    return round((length - size) / 2)


@dataclass(frozen=True)
class ColourStats:
    """Per-channel mean/std and the RGB covariance's eigen-decomposition, pixels in [0, 1]."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    eigval: tuple[float, float, float] = IMAGENET_EIGVAL
    eigvec: tuple[tuple[float, float, float], ...] = IMAGENET_EIGVEC
    source: str = "imagenet"  # "imagenet" (published constants) or "computed:<fingerprint>"

    @classmethod
    def from_dict(cls, d: dict) -> "ColourStats":
        return cls(
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            eigval=tuple(d["eigval"]),
            eigvec=tuple(tuple(r) for r in d["eigvec"]),
            source=d["source"],
        )


@dataclass(frozen=True)
class AugmentSpec:
    """What every pipeline does to an image. ``train=False`` gives the evaluation transform."""

    resize: int = 256  # shorter side to this, then the central resize x resize square
    crop: int = 227  # random crop when training, centre/ten crops when evaluating
    flip_prob: float = 0.5
    lighting_sigma: float = 0.1
    colour: ColourStats = field(default_factory=ColourStats)

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop {self.crop} must be in (0, resize={self.resize}]")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob {self.flip_prob} must be in [0, 1]")
        if self.lighting_sigma < 0:
            raise ValueError(f"lighting_sigma {self.lighting_sigma} must be >= 0")

    def without_augmentation(self) -> "AugmentSpec":
        """The same spec with flip and lighting off (crops still apply)."""
        return replace(self, flip_prob=0.0, lighting_sigma=0.0)

    def lighting_matrix(self) -> np.ndarray:
        """3x3 matrix M with shift = M @ alpha: columns are eigvec[:, i] * eigval[i]."""
        return np.asarray(self.colour.eigvec, dtype=np.float64) * np.asarray(self.colour.eigval)[None, :]

    def draw(self, seed: int) -> tuple[int, int, bool, np.ndarray]:
        """One use of one image: crop ``(top, left)`` uniform in ``[0, resize - crop]``, flip with
        ``flip_prob``, lighting ``alpha ~ N(0, lighting_sigma)`` (3; zeros when off), from ``seed``
        (``pipelines.seeding.draw_seed``). The torchvision and DALI pipelines draw through this."""
        rng = np.random.default_rng(seed)
        top, left = (int(v) for v in rng.integers(0, self.resize - self.crop + 1, size=2))
        flip = bool(rng.random() < self.flip_prob)
        alpha = rng.normal(0.0, self.lighting_sigma, size=3) if self.lighting_sigma > 0 else np.zeros(3)
        return top, left, flip, alpha

    def ten_crop_offsets(self) -> list[tuple[int, int, bool]]:
        """(top, left, flipped) of the paper's ten test views, in a fixed order shared by all pipelines."""
        edge = self.resize - self.crop
        centre = edge // 2
        corners = [(0, 0), (0, edge), (edge, 0), (edge, edge), (centre, centre)]
        return [(t, l, False) for t, l in corners] + [(t, l, True) for t, l in corners]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentSpec":
        d = dict(d)
        d["colour"] = ColourStats.from_dict(d["colour"])
        return cls(**d)
