"""Each library's own stock ImageNet training loader, reproduced as its example writes it, as
a baseline for the pipeline of the same library (``bench.harness.baselines``).

They are *baselines*, not pipelines: they do not implement the paper's augmentation (they do
RandomResizedCrop + flip + normalise, as each example does), they are not seeded the way our
pipelines are, and nothing but the throughput harness uses them. Each module has one
function, ``build(split, *, crop, batch_size, workers, seed, device, cache_dir)``, returning
a ``StockLoader``; the library is imported only when it is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from pipelines.base import Batch, Loader

# pipeline name -> (module, what the baseline reproduces)
STOCK: dict[str, tuple[str, str]] = {
    "torchvision": ("pipelines.stock.torchvision_stock", "pytorch/examples imagenet/main.py: ImageFolder, RandomResizedCrop, "
                    "RandomHorizontalFlip, ToTensor, Normalize; DataLoader(shuffle=True, pin_memory=True)"),
    "dali": ("pipelines.stock.dali_stock", "DALI's ResNet-50 PyTorch example (create_dali_pipeline): readers.file, "
             "decoders.image_random_crop, resize, crop_mirror_normalize with a coin-flip mirror"),
    "ffcv": ("pipelines.stock.ffcv_stock", "ffcv-imagenet train_imagenet.py: full-resolution JPEG .beton, RandomResizedCropRGBImageDecoder, "
             "RandomHorizontalFlip, ToTensor, NormalizeImage; QUASI_RANDOM order"),
}


@dataclass
class StockLoader(Loader):
    """A stock loader behind the pipeline contract's ``Loader`` (so ``BatchStream`` drives it)."""

    batches: Iterable[Batch]
    batches_per_epoch: int
    batch_size: int
    closer: Callable[[], None] = lambda: None
    info: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.batches_per_epoch

    @property
    def num_samples(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """The stock loaders shuffle by themselves (as their examples do): nothing to choose."""

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def close(self) -> None:
        self.closer()


def stock_names() -> list[str]:
    return sorted(STOCK)


def describe(name: str) -> str:
    return STOCK[name][1]


def build(name: str, split, **kwargs) -> StockLoader:
    """The stock loader of pipeline ``name``'s library (a ``KeyError`` for a name without one)."""
    module = importlib.import_module(STOCK[name][0])
    return module.build(split, **kwargs)
