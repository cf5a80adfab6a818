"""The torchvision pipeline: a torch ``DataLoader`` with worker processes, PIL decoding and
the paper's augmentation written with ``torchvision.transforms.v2.functional``.

Each sample's random crop, flip and lighting come from a generator seeded by
``(seed, epoch, sample index)`` (see ``pipelines.seeding``), so the batches of an epoch are
the same whatever the number of workers, and a resumed run sees exactly what an
uninterrupted one would have.

Where the work runs (issue 14: measured against pytorch/examples' loader with a profile):
workers decode, crop and flip, and hand back **uint8** crops with each image's lighting
shift (three float32 numbers); the loader turns the batch into floats, adds the shifts and
normalises it on the target device (``normalise_batch``), after the uint8 batch crossed from
the worker (4x less data than float32) and, on a GPU, the bus. A training crop is resampled
directly from the input window that maps onto it (``Image.resize(box=...)``, the same
sampling grid as resizing the whole image and then cropping, see ``crop_window``), and EXIF
is only acted on when an orientation tag asks for a rotation.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pipelines.base import Batch, Loader, Pipeline, PipelineOptions, Split
from pipelines.seeding import draw_seed, epoch_permutation
from pipelines.spec import AugmentSpec


ORIENTATION = 0x0112  # the EXIF tag; 1 (or absent) means upright


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to 8-bit RGB, upright according to its EXIF orientation.

    ``ImageOps.exif_transpose`` copies the decoded image even when it is upright: it is called
    only when the orientation tag asks for a change, and ``convert`` only when not RGB.
    """
    with Image.open(path) as img:
        if img.getexif().get(ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode != "RGB":
            return img.convert("RGB")
        img.load()
        return img


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """The paper's dataset preprocessing: shorter side to ``size``, central ``size`` x ``size`` square; uint8 CHW."""
    img = F.resize(img, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    img = F.center_crop(img, [size, size])
    return F.pil_to_tensor(img)


def crop_window(length: int, short: int, size: int, offset: int, crop: int) -> tuple[float, float]:
    """The input interval, along an axis of ``length`` pixels, that ``preprocess`` (shorter side
    ``short`` to ``size``, central square) maps onto ``[offset, offset + crop)`` of its square.

    torchvision resizes that axis to ``out = size * length // short`` and the square starts at
    ``round((out - size) / 2)``; output pixel ``k`` of the resize is centred on input
    ``(k + 0.5) * length / out``. Resampling ``crop`` pixels from the returned interval centres
    them on the same points with the same filter width, so it equals resize-then-crop up to
    PIL's fixed-point filter coefficients: a filter start shifted by a rounding error of the
    float interval can move one coefficient by one unit, which changed 0.1% of the values by
    one level (at most 1/255) on 1,015 random crops of 203 photographs and never more.
    """
    out = size * length // short
    start = int(round((out - size) / 2.0)) + offset
    return start * length / out, (start + crop) * length / out


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
        """One image, normalised: ``normalise_batch`` over ``draw``'s output (what the loader does per batch)."""
        x, shift = self.draw(img, seed)
        return normalise_batch(x[None], shift[None], self.mean, self.std)[0]

    def draw(self, img: Image.Image, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What a worker hands back: the uint8 crop (or the ten views) and the lighting shift (float32, 3; zeros when evaluating)."""
        spec = self.spec
        edge = spec.resize - spec.crop
        if self.train:
            top, left, flip, alpha = spec.draw(seed)
            w, h = img.size
            short = min(w, h)
            x0, x1 = crop_window(w, short, spec.resize, left, spec.crop)
            y0, y1 = crop_window(h, short, spec.resize, top, spec.crop)
            crop = img.resize((spec.crop, spec.crop), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1))
            if flip:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            return F.pil_to_tensor(crop), self.lighting @ torch.from_numpy(alpha).float()
        x = preprocess(img, spec.resize)
        if self.ten_crop:
            return torch.stack([self._crop(x, t, l, f) for t, l, f in spec.ten_crop_offsets()]), torch.zeros(3)
        return self._crop(x, edge // 2, edge // 2, False), torch.zeros(3)

    def _crop(self, x: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
        x = x[:, top : top + self.spec.crop, left : left + self.spec.crop]
        return x.flip(-1) if flip else x


def normalise_batch(images: torch.Tensor, shifts: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x 3 x H x W`` (or ``N x 10 x 3 x H x W``) to the contract's float: ``(x / 255 + shift - mean) / std``,
    ``shifts`` ``N x 3`` (one per image, the same for its ten views); on the images' device."""
    view = (-1,) + (1,) * (images.dim() - 4) + (3, 1, 1)
    x = images.float().div_(255.0)
    x += shifts.to(x.device).view(view)
    return x.sub_(mean.to(x.device)).div_(std.to(x.device))


class ImageSamples(Dataset):
    """The split's files; indexed by ``(sample index, draw seed)`` pairs from ``SeededSampler``."""

    def __init__(self, split: Split, transform: PaperTransform) -> None:
        self.paths = split.paths
        self.labels = split.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """uint8 image(s), lighting shift, label: normalised per batch by the loader."""
        index, seed = key
        image, shift = self.transform.draw(load_rgb(self.paths[index]), seed)
        return image, shift, self.labels[index]


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
        self.mean, self.std = dataset.transform.mean.to(self.device), dataset.transform.std.to(self.device)
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
        for images, shifts, labels in self.loader:
            images = images.to(self.device, non_blocking=non_blocking)
            shifts = shifts.to(self.device, non_blocking=non_blocking)
            yield normalise_batch(images, shifts, self.mean, self.std), labels.to(self.device, non_blocking=non_blocking)

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
            "worker_output": "uint8 crops and lighting shifts; lighting and normalisation batched on the target device",
            "workers": self.options.workers,
            "determinism": {"order": True, "augmentation": True, "note": "per-sample draws seeded by (seed, epoch, index): independent of worker count"},
        }
