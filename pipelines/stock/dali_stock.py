"""DALI's ResNet-50 PyTorch example (``docs/examples/use_cases/pytorch/resnet50/main.py``,
``create_dali_pipeline``), training branch: ``readers.file(random_shuffle=True,
pad_last_batch=True)``, ``decoders.image_random_crop`` (area 0.1-1, aspect 0.8-1.25, 100
attempts), ``resize`` to the crop with triangular interpolation, ``crop_mirror_normalize``
(ImageNet mean/std x 255, CHW float, mirror from ``random.coin_flip``), iterated by
``DALIClassificationIterator``-style ``DALIGenericIterator``.

The decoder is ``mixed`` on a CUDA device DALI sees, else ``cpu`` with ``device_id=None`` (the
example's ``--dali_cpu``), and ``crop_mirror_normalize`` runs on the GPU in the mixed graph.
Files come from the split's list; the seed is the example's ``12 + device_id`` shifted by ours.
"""

from __future__ import annotations

import torch
from nvidia.dali import fn, types
from nvidia.dali.backend import GetCUDADeviceCount
from nvidia.dali.pipeline import pipeline_def
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from pipelines.stock import StockLoader

MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


@pipeline_def
def stock_graph(files, labels, *, crop: int, decoder: str):
    jpegs, labels = fn.readers.file(files=list(files), labels=list(labels), random_shuffle=True, pad_last_batch=True, name="Reader")
    images = fn.decoders.image_random_crop(jpegs, device=decoder, output_type=types.RGB, random_aspect_ratio=[0.8, 1.25],
                                           random_area=[0.1, 1.0], num_attempts=100)
    images = fn.resize(images, resize_x=crop, resize_y=crop, interp_type=types.INTERP_TRIANGULAR)
    mirror = fn.random.coin_flip(probability=0.5)
    images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", crop=(crop, crop), mean=MEAN, std=STD, mirror=mirror)
    return images, (labels.gpu() if decoder == "mixed" else labels)


def build(split, *, crop: int, batch_size: int, workers: int, seed: int, device: torch.device, cache_dir: str) -> StockLoader:
    mixed = device.type == "cuda" and GetCUDADeviceCount() > 0
    device_id = (device.index or 0) if mixed else None
    pipe = stock_graph(split.paths, split.labels, crop=crop, decoder="mixed" if mixed else "cpu", batch_size=batch_size,
                       num_threads=max(1, workers), device_id=device_id, seed=12 + (device_id or 0) + seed)
    pipe.build()
    iterator = DALIGenericIterator([pipe], ["data", "label"], reader_name="Reader", last_batch_policy=LastBatchPolicy.DROP, auto_reset=True)

    def batches():
        for [b] in iterator:
            yield b["data"].to(device, non_blocking=True), b["label"].view(-1).long().to(device, non_blocking=True)

    class Epochs:
        def __iter__(self):
            return batches()

    return StockLoader(Epochs(), len(split) // batch_size, batch_size, info={"decoder": "mixed" if mixed else "cpu"})
