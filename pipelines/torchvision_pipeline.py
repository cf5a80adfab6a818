"""The torchvision pipeline: a torch ``DataLoader`` with worker processes, ``torchvision.io``
decoding (PIL for evaluation) and the paper's augmentation written with
``torchvision.transforms.v2.functional``.

Each sample's random crop, flip and lighting come from a generator seeded by
``(seed, epoch, sample index)`` (see ``pipelines.seeding``), so the batches of an epoch are
the same whatever the number of workers, and a resumed run sees exactly what an
uninterrupted one would have.

Where the work runs (issue 14: measured against pytorch/examples' loader with a profile):
a worker decodes a training image with ``torchvision.io`` (libjpeg-turbo straight into a
tensor, EXIF orientation applied; PIL for what it does not take, see ``decode_rgb``),
resizes it with torch's uint8 antialiased kernel, crops and flips it, and hands back the
**uint8** crop with the image's lighting shift (three float32 numbers); the loader turns the
batch into floats, adds the shifts and normalises it on the target device
(``normalise_batch``), after the uint8 batch crossed from the worker (4x less data than
float32) and, on a GPU, the bus. Per image on one core of this project's machine (cProfile
and timers, 300 photo-like 500x375 JPEGs): PIL decode 0.69 ms, PIL's resample of the crop
window 0.59 ms, against 0.66 ms and 0.24 ms here. Evaluation keeps PIL (``load_rgb``,
``preprocess``): it is the reference the FFCV conversion and the odd-file tests share.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import torch
from PIL import ExifTags, Image, ImageOps
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from pipelines.base import Batch, Loader, Pipeline, PipelineOptions, Split
from pipelines.seeding import draw_seed, rank_order
from pipelines.spec import AugmentSpec, centre_start


JPEG_MAGIC = b"\xff\xd8"
# torchvision 0.29 deprecates its codecs in favour of TorchCodec; they still work (0.29.1 is pinned).
TORCHVISION_CODEC_WARNING = "The image decoding and encoding capabilities of TorchVision are deprecated"


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to 8-bit RGB, upright according to its EXIF orientation.

    ``ImageOps.exif_transpose`` copies the decoded image even when it is upright: it is called
    only when the orientation tag asks for a change, and ``convert`` only when not RGB.
    """
    with Image.open(path) as img:
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # 1 or absent: upright
            img = ImageOps.exif_transpose(img)
        if img.mode != "RGB":
            return img.convert("RGB")
        img.load()
        return img


def decode_rgb(path: str) -> torch.Tensor:
    """Decode an image file to upright 8-bit RGB, uint8 ``3 x H x W``, as ``load_rgb`` does but faster.

    Grey and colour JPEGs go through ``torchvision.io.decode_jpeg`` (libjpeg-turbo, the EXIF
    orientation applied): the same pixels as PIL's decode, measured equal on all eight
    orientations, grey and progressive files (``tests/test_torchvision_pipeline.py``). CMYK
    JPEGs (their colour conversion differs from PIL's), other formats and files torchvision
    refuses go through ``load_rgb``, so every file decodes as the evaluation path decodes it.
    """
    data = Path(path).read_bytes()
    if data[:2] == JPEG_MAGIC:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=TORCHVISION_CODEC_WARNING, category=DeprecationWarning)
                x = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED, apply_exif_orientation=True)
        except RuntimeError:
            x = None
        if x is not None and x.shape[0] in (1, 3):
            return x.expand(3, -1, -1) if x.shape[0] == 1 else x
    return F.pil_to_tensor(load_rgb(path))


def preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """The paper's dataset preprocessing: shorter side to ``size``, central ``size`` x ``size`` square; uint8 CHW."""
    img = F.resize(img, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    img = F.center_crop(img, [size, size])
    return F.pil_to_tensor(img)


def square_origin(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner, in an image resized to shorter side ``size``, of its central square (``center_crop``'s rounding)."""
    return centre_start(height, size), centre_start(width, size)


class PaperTransform:
    """The spec's training (random crop, flip, lighting) or evaluation (centre or ten crops) transform."""

    def __init__(self, spec: AugmentSpec, *, train: bool, ten_crop: bool = False) -> None:
        self.spec = spec
        self.train = train
        self.ten_crop = ten_crop
        self.mean = torch.tensor(spec.colour.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(spec.colour.std, dtype=torch.float32).view(3, 1, 1)
        self.lighting = torch.from_numpy(spec.lighting_matrix()).float()

    def __call__(self, img: Image.Image | torch.Tensor, seed: int) -> torch.Tensor:
        """One image, normalised: ``normalise_batch`` over ``draw``'s output (what the loader does per batch)."""
        x, shift = self.draw(img, seed)
        return normalise_batch(x[None], shift[None], self.mean, self.std)[0]

    def draw(self, img: Image.Image | torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What a worker hands back: the uint8 crop (or the ten views) and the lighting shift (float32, 3; zeros when evaluating).

        Training takes a PIL image or a uint8 ``3 x H x W`` tensor (``decode_rgb``'s): resize to
        the shorter side ``spec.resize`` with torch's antialiased bilinear kernel, which follows
        PIL's filter; against ``preprocess`` (PIL) it differed by one level on 0.12% of the
        values of 100 random crops of photo-like JPEGs and never by more. Then the crop at
        the drawn offset of the central square and the flip (views: no copy; the collate copies).
        """
        spec = self.spec
        edge = spec.resize - spec.crop
        if self.train:
            top, left, flip, alpha = spec.draw(seed)
            x = img if isinstance(img, torch.Tensor) else F.pil_to_tensor(img)
            x = F.resize(x, spec.resize, interpolation=InterpolationMode.BILINEAR, antialias=True)
            y0, x0 = square_origin(x.shape[-2], x.shape[-1], spec.resize)
            crop = x[:, y0 + top : y0 + top + spec.crop, x0 + left : x0 + left + spec.crop]
            return (crop.flip(-1) if flip else crop), self.lighting @ torch.from_numpy(alpha).float()
        if isinstance(img, torch.Tensor):
            raise TypeError("evaluation views are cut from a PIL image (load_rgb), the reference the other pipelines share")
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
        path = self.paths[index]
        image, shift = self.transform.draw(decode_rgb(path) if self.transform.train else load_rgb(path), seed)
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
        return rank_order(self.num_samples, self.seed, self.epoch, self.rank, self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices():
            yield index, draw_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return len(self.indices())


@contextmanager
def one_thread(active: bool) -> Iterator[None]:
    """torch on one intra-op thread inside the block (when ``active``), as many as before after it.

    The loader normalises a CPU-bound batch this way while worker processes hold the cores: with
    torch's default threads, the main process's OpenMP threads spin after each parallel op and
    take a core from the workers (profiled, 2 workers on 2 cores: 0.9 ms of main-process CPU
    per image against 0.19 ms, and 895 against 1,374 images/s).
    """
    threads = torch.get_num_threads()
    if not active or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
        beside_workers = self.device.type == "cpu" and self.loader.num_workers > 0
        for images, shifts, labels in self.loader:
            images = images.to(self.device, non_blocking=non_blocking)
            shifts = shifts.to(self.device, non_blocking=non_blocking)
            with one_thread(beside_workers):
                x = normalise_batch(images, shifts, self.mean, self.std)
            yield x, labels.to(self.device, non_blocking=non_blocking)

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


class TorchvisionPipeline(Pipeline):
    """torch DataLoader, torchvision.io decode (PIL for evaluation), the paper's augmentation; seeds per sample, not per worker."""

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
            "decoder": "torchvision.io (training; PIL for CMYK and non-JPEG), pil (evaluation)",
            "worker_output": "uint8 crops and lighting shifts; lighting and normalisation batched on the target device",
            "workers": self.options.workers,
            "determinism": {"order": True, "augmentation": True, "note": "per-sample draws seeded by (seed, epoch, index): independent of worker count"},
        }
