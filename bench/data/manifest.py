"""One scan of a dataset root, one list of samples that every pipeline reads.

The root is in ImageFolder layout: ``root/train/<class>/<file>`` and ``root/val/<class>/<file>``.
Class indices are the sorted class folder names of ``train/`` (ImageFolder's order), and
``val/`` uses the same indices. Every file is checked once by decoding it; files that are
not decodable images are kept in the manifest as ``bad`` with the reason, and left out of
the splits the pipelines read.

The check is cached under ``cache_dir/manifests/<fingerprint>.json``; the fingerprint hashes
every file's relative path, size and modification time, so any change to the dataset
gives a new manifest and an unchanged dataset is never checked twice.

At ImageNet's scale (1.33 M files): the cached manifest is columnar (one list per field, a
reason only for bad files), about 70 bytes an entry with ImageNet-like names (about 90 MB for
ILSVRC-2012's 1.33 M files, against about 230 MB as a list of objects), and it grows linearly
with the files (tested on small N; measured by ``python -m bench.scale``). The check shows a
progress bar with images/s and the time left, and journals its results as it goes
(``<fingerprint>.partial``, one JSON line per checked file, flushed every second): an
interrupted check resumes where it stopped, decoding only what it had not checked.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from bench.atomic import atomic_write_json
from bench.errors import UserError
from pipelines.base import Split
from pipelines.lifetime import worker_pool

MANIFEST_VERSION = 3  # 3: columnar cache file
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
        """Columnar: one list per field, reasons only for the bad entries (keyed by their index)."""
        return {
            "version": MANIFEST_VERSION,
            "root": self.root,
            "classes": list(self.classes),
            "fingerprint": self.fingerprint,
            "split": [SPLITS.index(e.split) for e in self.entries],
            "path": [e.path for e in self.entries],
            "label": [e.label for e in self.entries],
            "size": [e.size for e in self.entries],
            "bad": {str(i): e.reason for i, e in enumerate(self.entries) if e.status == "bad"},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        if d.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {d.get('version')!r}, not {MANIFEST_VERSION}")
        bad = {int(i): r for i, r in d["bad"].items()}
        entries = tuple(
            Entry(SPLITS[s], p, label, size, "bad" if i in bad else "ok", bad.get(i, ""))
            for i, (s, p, label, size) in enumerate(zip(d["split"], d["path"], d["label"], d["size"], strict=True))
        )
        return cls(root=d["root"], classes=tuple(d["classes"]), entries=entries, fingerprint=d["fingerprint"])


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


def progress_bar(total: int, initial: int, enabled: bool, file=None) -> tqdm:
    """The check's bar: images done of ``total``, images/s and the time left (on a terminal only, as every bar here)."""
    shown = (None if file is None else False) if enabled else True  # None: on a terminal only; a file given is always written
    return tqdm(total=total, initial=initial, desc="checking images", unit="img", disable=shown,
                mininterval=1.0, smoothing=0.1, file=file)


def _read_journal(journal: Path) -> dict[str, str]:
    """What an interrupted check had written: path -> reason; a line cut short by a kill is ignored."""
    done: dict[str, str] = {}
    if not journal.is_file():
        return done
    with open(journal, encoding="utf-8") as f:
        for line in f:
            try:
                path, reason = json.loads(line)
            except (ValueError, TypeError):
                continue
            done[path] = reason
    return done


def _check_all(paths: list[str], rel: list[str], journal: Path, workers: int, progress: bool, max_pixels: int) -> dict[str, str]:
    """Check every file not already in ``journal``; each result is appended to it as it comes, so an
    interruption (Ctrl-C, a kill) loses at most the last second's results."""
    done = _read_journal(journal)
    todo = [(p, r) for p, r in zip(paths, rel) if r not in done]
    check = partial(check_image, max_pixels=max_pixels)
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "a", encoding="utf-8") as out, progress_bar(len(paths), len(paths) - len(todo), progress) as bar:
        if done and progress:
            bar.write(f"resuming the check: {len(paths) - len(todo)} of {len(paths)} images already checked")
        flushed = time.monotonic()

        def keep(rel_path: str, reason: str) -> None:
            nonlocal flushed
            done[rel_path] = reason
            out.write(json.dumps([rel_path, reason]) + "\n")
            bar.update(1)
            if time.monotonic() - flushed > 1.0:
                out.flush()
                flushed = time.monotonic()

        if workers <= 1 or len(todo) < 64:  # not worth starting processes for
            for p, r in todo:
                keep(r, check(p))
        else:
            with worker_pool(workers) as pool:
                for (_, r), reason in zip(todo, pool.map(check, [p for p, _ in todo], chunksize=32)):
                    keep(r, reason)
    return done


def load_manifest(
    root: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    required: tuple[str, ...] = SPLITS,
) -> Manifest:
    """The manifest of ``root``, from the cache when the dataset has not changed, else by checking every file.

    Each split in ``required`` must hold a decodable image (a ``UserError`` names the split, and
    says when its folder is missing); the relu-tanh harness, which trains only, requires ``train``.
    """
    root = Path(root).resolve()
    try:
        classes, listed = _list_files(root)
    except OSError as err:
        raise UserError(f"cannot read {err.filename}: {err.strerror}") from None
    fp = fingerprint(classes, listed, max_pixels)
    cache_file = Path(cache_dir) / "manifests" / f"{fp}.json"
    cached = _read_cached(cache_file, root)
    if cached is not None:
        return require_splits(cached, required)
    journal = cache_file.with_suffix(".partial")
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_file.with_suffix(".lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # processes started together (ranks) check once; released if this one dies
        cached = _read_cached(cache_file, root)
        if cached is not None:
            return require_splits(cached, required)
        to_check = [f for f in listed if not f.reason]
        checked = _check_all([str(root / f.path) for f in to_check], [f.path for f in to_check], journal,
                             workers or os.cpu_count() or 1, progress, max_pixels)
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
        atomic_write_json(cache_file, manifest.to_dict())  # cached whatever it holds: what a caller requires is checked below
        journal.unlink(missing_ok=True)
    return require_splits(manifest, required)


def missing_split_folder(root: str | os.PathLike, split: str) -> str:
    """The error for a data root without ``split/`` (said before any file is checked, where a caller can)."""
    return f"data root {root} has no {split}/ folder (expected ImageFolder layout: {split}/<class>/<image>)"


def require_splits(manifest: Manifest, splits: tuple[str, ...]) -> Manifest:
    """``manifest`` if each of ``splits`` holds a decodable image; else a ``UserError`` that names the split."""
    counts = manifest.counts()
    for split in splits:
        if counts[split]["ok"] == 0:
            if not (Path(manifest.root) / split).is_dir():
                raise UserError(missing_split_folder(manifest.root, split))
            raise UserError(f"data root {manifest.root} has no decodable images in {split}/")
    return manifest


def _read_cached(cache_file: Path, root: Path) -> Manifest | None:
    if cache_file.is_file():
        try:
            cached = Manifest.from_dict(json.loads(cache_file.read_text()))
            if cached.root == str(root):
                return cached
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable cache entry is rebuilt
    return None
