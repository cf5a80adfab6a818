"""One scan of a dataset root, one list of samples that every pipeline reads.

The root is in ImageFolder layout: ``root/train/<class>/<file>`` and ``root/val/<class>/<file>``.
Class indices are the sorted class folder names of ``train/`` (ImageFolder's order), and
``val/`` uses the same indices. Every file is checked once by decoding it; files that are
not decodable images are kept in the manifest as ``bad`` with the reason, and left out of
the splits the pipelines read.

The check is cached under ``cache_dir/manifests/<fingerprint>.json``; the fingerprint hashes
every file's relative path, size and modification time, so any change to the dataset
gives a new manifest and an unchanged dataset is never checked twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from bench.atomic import atomic_write_json
from bench.errors import UserError
from pipelines.base import Split

MANIFEST_VERSION = 2
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # what PIL itself warns about as a possible decompression bomb
SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Entry:
    split: str
    path: str  # relative to the root, with forward slashes
    label: int
    size: int
    status: str  # "ok" or "bad"
    reason: str = ""


@dataclass(frozen=True)
class Manifest:
    root: str
    classes: tuple[str, ...]
    entries: tuple[Entry, ...]
    fingerprint: str

    def split(self, name: str) -> Split:
        """The decodable samples of split ``name`` in manifest order, as pipelines take them."""
        ok = [e for e in self.entries if e.split == name and e.status == "ok"]
        return Split(
            name=name,
            paths=tuple(os.path.join(self.root, e.path) for e in ok),
            labels=tuple(e.label for e in ok),
            num_classes=len(self.classes),
            fingerprint=self.fingerprint,
        )

    def bad(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "bad"]

    def empty_classes(self, split: str = "train") -> list[str]:
        """Classes with no decodable image in ``split`` (they keep their index)."""
        present = {e.label for e in self.entries if e.split == split and e.status == "ok"}
        return [c for i, c in enumerate(self.classes) if i not in present]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {s: {"ok": 0, "bad": 0} for s in SPLITS}
        for e in self.entries:
            out[e.split][e.status] += 1
        return out

    def to_dict(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "root": self.root,
            "classes": list(self.classes),
            "fingerprint": self.fingerprint,
            "entries": [asdict(e) for e in self.entries],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        return cls(
            root=d["root"],
            classes=tuple(d["classes"]),
            entries=tuple(Entry(**e) for e in d["entries"]),
            fingerprint=d["fingerprint"],
        )


@dataclass(frozen=True)
class _Listed:
    split: str
    path: str
    label: int
    size: int
    mtime_ns: int
    reason: str  # set when the file is bad before any decoding (wrong extension, unknown class)


def _list_files(root: Path) -> tuple[list[str], list[_Listed]]:
    if not root.is_dir():
        raise UserError(f"data root {root} does not exist or is not a directory")
    train = root / "train"
    if not train.is_dir():
        raise UserError(f"data root {root} has no train/ folder (expected ImageFolder layout: train/<class>/<image>)")
    classes = sorted(d.name for d in os.scandir(train) if d.is_dir())
    if not classes:
        raise UserError(f"{train} has no class folders")
    index = {c: i for i, c in enumerate(classes)}
    listed: list[_Listed] = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for class_dir in sorted(os.scandir(split_dir), key=lambda d: d.name):
            if not class_dir.is_dir():
                continue
            def unreadable(err: OSError, split: str = split, label: int = index.get(class_dir.name, -1)) -> None:
                rel = os.path.relpath(err.filename, root).replace(os.sep, "/")
                listed.append(_Listed(split, rel + "/", label, 0, 0, f"{type(err).__name__}: {err.strerror}"))

            for dirpath, dirnames, filenames in os.walk(class_dir.path, onerror=unreadable):
                dirnames.sort()
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    rel = os.path.relpath(full, root).replace(os.sep, "/")
                    st = os.stat(full)
                    reason = ""
                    if class_dir.name not in index:
                        reason = f"class {class_dir.name!r} is not in train/"
                    elif not name.lower().endswith(IMAGE_EXTENSIONS):
                        reason = f"not an image file name (expected {', '.join(IMAGE_EXTENSIONS)})"
                    listed.append(_Listed(split, rel, index.get(class_dir.name, -1), st.st_size, st.st_mtime_ns, reason))
    return classes, listed


def fingerprint(classes: list[str], listed: list[_Listed], max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    h = hashlib.sha256(f"manifest-v{MANIFEST_VERSION}\nmax_pixels={max_pixels}\n".encode())
    h.update(("\n".join(classes) + "\n").encode())
    for f in listed:
        h.update(f"{f.split}\t{f.path}\t{f.size}\t{f.mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def check_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """'' if ``path`` decodes as an image of at most ``max_pixels`` pixels, else the reason it does not."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked here, against our own limit, before anything is decoded
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                return f"image of {img.width}x{img.height} pixels is larger than the limit of {max_pixels} pixels"
            img.draft("RGB", (img.width // 8 or 1, img.height // 8 or 1))  # JPEG: decode at 1/8 scale, still reads every byte
            img.load()
    except Exception as err:  # noqa: BLE001 - any failure to decode makes the file bad; the reason says which
        return f"{type(err).__name__}: {err}".replace("\n", " ")
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit
    return ""


def _check_all(paths: list[str], workers: int, progress: bool, max_pixels: int) -> list[str]:
    check = partial(check_image, max_pixels=max_pixels)
    if workers <= 1 or len(paths) < 64:  # not worth starting processes for
        return [check(p) for p in tqdm(paths, desc="checking images", unit="img", disable=None if progress else True, mininterval=1.0)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(
            tqdm(
                pool.map(check, paths, chunksize=32),
                total=len(paths),
                desc="checking images",
                unit="img",
                disable=None if progress else True,
                mininterval=1.0,
            )
        )


def load_manifest(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Manifest:
    """The manifest of ``root``, from the cache when the dataset has not changed, else by checking every file."""
    root = Path(root).resolve()
    try:
        classes, listed = _list_files(root)
    except OSError as err:
        raise UserError(f"cannot read {err.filename}: {err.strerror}") from None
    fp = fingerprint(classes, listed, max_pixels)
    cache_file = Path(cache_dir) / "manifests" / f"{fp}.json"
    if cache_file.is_file():
        try:
            cached = Manifest.from_dict(json.loads(cache_file.read_text()))
            if cached.root == str(root):
                return cached
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable cache entry is rebuilt below
    to_check = [f for f in listed if not f.reason]
    reasons = _check_all([str(root / f.path) for f in to_check], workers or os.cpu_count() or 1, progress, max_pixels)
    checked = {f.path: r for f, r in zip(to_check, reasons)}
    entries = tuple(
        Entry(
            split=f.split,
            path=f.path,
            label=f.label,
            size=f.size,
            status="bad" if (f.reason or checked.get(f.path)) else "ok",
            reason=f.reason or checked.get(f.path, ""),
        )
        for f in listed
    )
    manifest = Manifest(root=str(root), classes=tuple(classes), entries=entries, fingerprint=fp)
    for split in SPLITS:
        if not any(e.split == split and e.status == "ok" for e in entries):
            raise UserError(f"data root {root} has no decodable images in {split}/")
    atomic_write_json(cache_file, manifest.to_dict())
    return manifest
