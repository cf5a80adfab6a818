"""pytorch/examples ``imagenet/main.py``'s training loader: ``ImageFolder`` with
``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize`` (ImageNet
mean/std), ``DataLoader(batch_size, shuffle=True, num_workers, pin_memory=True)``.

Files and labels come from the split (the same files as our pipelines) instead of a directory
scan; the crop size is the run's (224 in the example).
"""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from pipelines.stock import StockLoader

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class Files(Dataset):
    """``ImageFolder``'s ``__getitem__``: PIL open, convert RGB (its default loader), transform."""

    def __init__(self, split, transform) -> None:
        self.paths, self.labels, self.transform = split.paths, split.labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with open(self.paths[i], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.transform(img), self.labels[i]


def build(split, *, crop: int, batch_size: int, workers: int, seed: int, device: torch.device, cache_dir: str) -> StockLoader:
    transform = transforms.Compose([transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                    transforms.Normalize(mean=MEAN, std=STD)])
    loader = DataLoader(Files(split, transform), batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                        drop_last=True, persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))

    def batches():
        for images, labels in loader:  # main.py moves each batch with .cuda(non_blocking=True)
            yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    class Epochs:
        def __iter__(self):
            return batches()

    def close() -> None:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        loader._iterator = None

    return StockLoader(Epochs(), len(loader), batch_size, close)
