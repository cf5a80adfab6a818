"""The torchvision pipeline: a torch ``DataLoader`` with worker processes, PIL decoding and
the paper's augmentation written with ``torchvision.transforms.v2.functional``.

Each sample's random crop, flip and lighting come from a generator seeded by
``(seed, epoch, sample index)`` (see ``pipelines.seeding``), so the batches of an epoch are
the same whatever the number of workers, and a resumed run sees exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pipelines.base import Batch, Loader, Pipeline, PipelineOptions, Split
from pipelines.seeding import draw_seed, epoch_permutation
from pipelines.spec import AugmentSpec


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to 8-bit RGB, upright according to its EXIF orientation."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """The paper's dataset preprocessing: shorter side to ``size``, central ``size`` x ``size`` square; uint8 CHW."""
    img = F.resize(img, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    img = F.center_crop(img, [size, size])
    return F.pil_to_tensor(img)


class PaperTransform:
    """The spec's training (random crop, flip, lighting) or evaluation (centre or ten crops) transform."""

    def __init__(self, spec: AugmentSpec, *, train: bool, ten_crop: bool = False) -> None:
        self.spec = spec
        self.train = train
        self.ten_crop = ten_crop
        self.mean = torch.tensor(spec.colour.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(spec.colour.std, dtype=torch.float32).view(3, 1, 1)
        self.lighting = torch.from_numpy(spec.lighting_matrix()).float()

    def __call__(self, img: Image.Image, seed: int) -> torch.Tensor:
        spec = self.spec
        x = preprocess(img, spec.resize)
        edge = spec.resize - spec.crop
        if self.train:
            rng = np.random.default_rng(seed)
            top, left = (int(v) for v in rng.integers(0, edge + 1, size=2))
            flip = bool(rng.random() < spec.flip_prob)
            alpha = rng.normal(0.0, spec.lighting_sigma, size=3) if spec.lighting_sigma > 0 else np.zeros(3)
            x = self._crop(x, top, left, flip)
            x = x.float().div_(255.0)
            x += (self.lighting @ torch.from_numpy(alpha).float()).view(3, 1, 1)
            return x.sub_(self.mean).div_(self.std)
        if self.ten_crop:
            views = [self._crop(x, t, l, f) for t, l, f in spec.ten_crop_offsets()]
            return self._normalise(torch.stack(views))
        return self._normalise(self._crop(x, edge // 2, edge // 2, False))

    def _crop(self, x: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
        x = x[:, top : top + self.spec.crop, left : left + self.spec.crop]
        return x.flip(-1) if flip else x

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(255.0).sub_(self.mean).div_(self.std)


class ImageSamples(Dataset):
    """The split's files; indexed by ``(sample index, draw seed)`` pairs from ``SeededSampler``."""

    def __init__(self, split: Split, transform: PaperTransform) -> None:
        self.paths = split.paths
        self.labels = split.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        return self.transform(load_rgb(self.paths[index]), seed), self.labels[index]


class SeededSampler(Sampler):
    """Yields ``(index, draw seed)``: this rank's shard of the epoch's order.

    Training: the epoch's permutation (``pipelines.seeding``), cut to a multiple of the world
    size so every rank takes the same number of steps, then every ``world_size``-th sample
    from ``rank``. Evaluation: the manifest's order, every ``world_size``-th sample; each
    sample is seen exactly once across ranks.
    """

    def __init__(self, num_samples: int, *, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Sequence[int]:
        if not self.shuffle:
            return range(self.rank, self.num_samples, self.world_size)
        order = epoch_permutation(self.num_samples, self.seed, self.epoch)
        usable = self.num_samples - self.num_samples % self.world_size
        return order[:usable][self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices():
            yield index, draw_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return len(self.indices())


class TorchvisionLoader(Loader):
    def __init__(self, dataset: ImageSamples, sampler: SeededSampler, options: PipelineOptions, *, drop_last: bool) -> None:
        self.device = torch.device(options.device)
        self.sampler = sampler
        self.loader = DataLoader(
            dataset,
            batch_size=options.batch_size,
            sampler=sampler,
            num_workers=options.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=drop_last,
            persistent_workers=options.workers > 0,
            # Its own generator: a new iterator then never draws from torch's global generator,
            # whose state (dropout) must not depend on when loaders were (re)created.
            generator=torch.Generator().manual_seed(options.seed),
            prefetch_factor=options.extra.get("prefetch_factor", 2) if options.workers > 0 else None,
        )

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_samples(self) -> int:
        if self.loader.drop_last:
            return len(self.loader) * self.loader.batch_size
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        non_blocking = self.device.type == "cuda"
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=non_blocking), labels.to(self.device, non_blocking=non_blocking)

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


class TorchvisionPipeline(Pipeline):
    """torch DataLoader, PIL decode, the paper's augmentation; seeds per sample, not per worker."""

    name = "torchvision"

    def _loader(self, split: Split, transform: PaperTransform, *, shuffle: bool, drop_last: bool) -> TorchvisionLoader:
        o = self.options
        sampler = SeededSampler(len(split), seed=o.seed, shuffle=shuffle, rank=o.rank, world_size=o.world_size)
        return TorchvisionLoader(ImageSamples(split, transform), sampler, o, drop_last=drop_last)

    def train_loader(self, split: Split) -> Loader:
        transform = PaperTransform(self.spec, train=True)
        return self._loader(split, transform, shuffle=True, drop_last=self.options.drop_last)

    def eval_loader(self, split: Split, *, ten_crop: bool = False) -> Loader:
        transform = PaperTransform(self.spec, train=False, ten_crop=ten_crop)
        return self._loader(split, transform, shuffle=False, drop_last=False)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "decoder": "pil",
            "workers": self.options.workers,
            "determinism": {"order": True, "augmentation": True, "note": "per-sample draws seeded by (seed, epoch, index): independent of worker count"},
        }
