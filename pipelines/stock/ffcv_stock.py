"""ffcv-imagenet's ``train_imagenet.py`` training loader: a JPEG ``.beton`` at full resolution
(its ``write_imagenet.py`` caps the longer side, here at 512: ImageNet-sized files are stored
as they are, re-encoded at quality 90), ``RandomResizedCropRGBImageDecoder((crop, crop))``,
``RandomHorizontalFlip()``, ``ToTensor()``, ``ToDevice``, ``ToTorchImage()``,
``NormalizeImage(mean, std, float16)``; ``IntDecoder, ToTensor, Squeeze, ToDevice`` for labels;
``OrderOption.QUASI_RANDOM``, ``os_cache=True``, ``drop_last=True``.

On a CPU ``NormalizeImage`` goes before ``ToTensor`` (after ``ToTorchImage`` FFCV's CPU loader
hangs: see DESIGN.md) and outputs float32 (float16 is the example's GPU choice). The crop is
the run's (the example ramps 160 to 192 px over training). The ``.beton`` is written once into
``cache_dir`` (``pipelines.ffcv_convert``) and reused.
"""

from __future__ import annotations

import numpy as np
import torch
from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

from pipelines.ffcv_convert import ConversionOptions, ensure_beton
from pipelines.ffcv_pipeline import torch_threads_kept
from pipelines.stock import StockLoader

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255
STORAGE = ConversionOptions(write_mode="jpg", jpeg_quality=90, resize_rule="max-side", max_side=512)


def build(split, *, crop: int, batch_size: int, workers: int, seed: int, device: torch.device, cache_dir: str) -> StockLoader:
    beton = ensure_beton(split, STORAGE, cache_dir, workers=max(1, workers))
    gpu = device.type == "cuda"
    image = [RandomResizedCropRGBImageDecoder((crop, crop)), RandomHorizontalFlip()]
    if gpu:
        image += [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage(), NormalizeImage(MEAN, STD, np.float16)]
    else:
        image += [NormalizeImage(MEAN, STD, np.float32), ToTensor(), ToTorchImage()]
    label = [IntDecoder(), ToTensor(), Squeeze()] + ([ToDevice(device, non_blocking=True)] if gpu else [])
    with torch_threads_kept():
        loader = Loader(str(beton.path), batch_size=batch_size, num_workers=max(1, workers), order=OrderOption.QUASI_RANDOM, os_cache=True,
                        drop_last=True, pipelines={"image": image, "label": label}, seed=seed)

    def batches():
        with torch_threads_kept():
            for images, labels in loader:
                yield images, labels

    class Epochs:
        def __iter__(self):
            return batches()

    return StockLoader(Epochs(), len(loader), batch_size, info={"conversion_s": beton.seconds})
