"""CIFAR-sized data for the ReLU-vs-tanh harness, held in memory as uint8 arrays.

``--data PATH``: CIFAR-10 in torchvision's format, read from disk and never downloaded:
``PATH/cifar-10-batches-py/`` (what ``torchvision.datasets.CIFAR10(root=PATH)`` reads) or that
folder itself, holding ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
``batches.meta``. The files are pickles, as torchvision reads them: point this at a copy you
trust. Unlike torchvision, a copy whose checksums differ from the official release (a
subset, a re-encoding) is still read; the record says whether the checksums match
(torchvision's own list of them).

``--data ROOT`` where ROOT is an ImageFolder root (``train/``, ``val/``) and no CIFAR-10:
any labelled images, decoded at 32 px and held in memory (``bench.data.small_folder``).

``--data embedded``: the generated CIFAR-sized default (``bench.data.synthetic_cifar``).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity

from bench.config import RunConfig
from bench.data.small_folder import open_small_folder
from bench.data.synthetic_cifar import GENERATOR_VERSION, SmallSyntheticSpec, generate_split
from bench.errors import UserError


@dataclass(frozen=True)
class ImageArrays:
    """A small-image dataset in memory: images N x H x W x 3 uint8, labels N int64."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    official: bool | None  # CIFAR-10: every file matches the published checksum; None for generated data
    manifest_fingerprint: str | None = None  # an ImageFolder root (bench.data.small_folder): its manifest's
    bad: tuple[dict, ...] = ()  # an ImageFolder root: files left out, {"path", "reason"}

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:20]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "classes": len(self.classes),
            "image_shape": list(self.train_images.shape[1:]),
            "counts": {"train": int(len(self.train_labels)), "test": int(len(self.test_labels))},
            "official_cifar10": self.official,
            "embedded": self.official is None,
            **({"manifest_fingerprint": self.manifest_fingerprint, "bad_count": len(self.bad), "bad": list(self.bad)}
               if self.manifest_fingerprint else {}),
        }


def cifar10_folder(path: Path) -> Path | None:
    """The ``cifar-10-batches-py`` folder at or under ``path``, if it holds every file of the format."""
    names = [n for n, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    for candidate in (path / CIFAR10.base_folder, path):
        if all((candidate / n).is_file() for n in names):
            return candidate
    return None


def _read_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means this is not a CIFAR-10 batch
        raise UserError(f"{path}: not a CIFAR-10 batch file ({type(err).__name__}: {err})") from None


def _images(batch: dict, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are R, G, B planes of 32x32
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path}: not a CIFAR-10 batch file ({type(err).__name__}: {err})") from None
    if len(images) != len(labels):
        raise UserError(f"{path}: {len(images)} images but {len(labels)} labels")
    return np.ascontiguousarray(images), labels


def load_cifar10(root: str | Path) -> ImageArrays:
    """CIFAR-10 from torchvision's on-disk format under ``root``; a ``UserError`` naming the path if it is not there."""
    root = Path(root).expanduser()
    folder = cifar10_folder(root)
    if folder is None:
        raise UserError(
            f"--data {root}: no CIFAR-10 in torchvision's format there (expected {CIFAR10.base_folder}/ with "
            "data_batch_1..5, test_batch and batches.meta); the relu-tanh harness reads CIFAR-10, an ImageFolder root "
            "(train/<class>/*, val/<class>/*) or --data embedded"
        )
    parts = [_images(_read_batch(folder / n), folder / n) for n, _ in CIFAR10.train_list]
    test_images, test_labels = _images(_read_batch(folder / CIFAR10.test_list[0][0]), folder / CIFAR10.test_list[0][0])
    meta = _read_batch(folder / CIFAR10.meta["filename"])
    classes = tuple(meta.get(CIFAR10.meta["key"], [])) if isinstance(meta, dict) else ()
    train_labels = np.concatenate([y for _, y in parts])
    num_classes = len(classes) or int(train_labels.max()) + 1
    for name, labels in (("training", train_labels), ("test", test_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise UserError(f"{folder}: {name} labels outside 0..{num_classes - 1}")
    official = all(check_integrity(str(folder / n), md5) for n, md5 in CIFAR10.train_list + CIFAR10.test_list)
    return ImageArrays(
        name="cifar10",
        train_images=np.concatenate([x for x, _ in parts]),
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=classes or tuple(str(i) for i in range(num_classes)),
        source=str(folder.resolve()),
        official=official,
    )


def embedded_cifar(spec: SmallSyntheticSpec) -> ImageArrays:
    train_images, train_labels = generate_split(spec, "train")
    test_images, test_labels = generate_split(spec, "test")
    return ImageArrays(
        name="embedded-cifar",
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=tuple(f"orientation_{i:02d}" for i in range(spec.classes)),
        source=f"generated: {spec} (generator v{GENERATOR_VERSION})",
        official=None,
    )


def open_image_arrays(config: RunConfig, size: int = 32) -> ImageArrays:
    """The run's small images: CIFAR-10 from ``--data``, any ImageFolder root there (decoded at ``size`` px), or the embedded default."""
    if config.embedded:
        return embedded_cifar(SmallSyntheticSpec(config.embedded_classes, config.embedded_train_per_class, config.embedded_val_per_class))
    root = Path(config.data).expanduser()
    if cifar10_folder(root) is None and (root / "train").is_dir():
        return open_small_folder(root, config.cache_dir, size=size, strict=config.strict, max_pixels=config.max_pixels,
                                 workers=config.workers, progress=config.progress)
    return load_cifar10(root)
