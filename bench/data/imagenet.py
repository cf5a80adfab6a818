"""Prepare ILSVRC-2012 in ImageFolder layout from its original archives.

    python -m bench.data.imagenet --archives DIR --out ROOT

``DIR`` holds ``ILSVRC2012_img_train.tar`` (one tar per class inside), ``ILSVRC2012_img_val.tar``
and ``ILSVRC2012_devkit_t12.tar.gz`` (the validation labels). ``ROOT`` receives
``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the usual re-sort of the validation
images into class folders). Every archive member is checked before it is written: only
regular files with plain names, never a path outside the target. Each split is written into
a hidden folder and renamed into place when complete, so an interrupted preparation leaves
no half split behind.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from tqdm import tqdm

from bench.errors import UserError

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT_TAR = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
DEVKIT_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"


def safe_name(archive: Path | str, member: tarfile.TarInfo) -> str:
    """The member's file name if it is a regular file whose path stays inside the target; else a UserError."""
    path = PurePosixPath(member.name)
    if not member.isfile():
        raise UserError(f"{archive}: refusing {member.name!r}: not a regular file")
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise UserError(f"{archive}: refusing {member.name!r}: its path leaves the target folder")
    return path.name


def extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target_dir: Path, archive: Path | str) -> Path:
    """Write one checked member as ``target_dir/<its file name>``."""
    name = safe_name(archive, member)
    dest = (target_dir / name).resolve()
    if dest.parent != target_dir.resolve():
        raise UserError(f"{archive}: refusing {member.name!r}: its path leaves the target folder")
    src = tar.extractfile(member)
    assert src is not None  # a regular file always has data
    with src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dest


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        if member.isdir():
            continue
        yield member


def read_devkit(devkit: Path) -> list[str]:
    """The WordNet id of every validation image, in file-number order (image 1 first)."""
    from scipy.io import loadmat

    with tarfile.open(devkit, "r:gz") as tar:
        files: dict[str, bytes] = {}
        for member in tar:
            if member.name in (DEVKIT_META, DEVKIT_TRUTH):
                safe_name(devkit, member)
                files[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    missing = {DEVKIT_META, DEVKIT_TRUTH} - set(files)
    if missing:
        raise UserError(f"{devkit}: missing {', '.join(sorted(missing))}")
    meta = loadmat(io.BytesIO(files[DEVKIT_META]), squeeze_me=True)["synsets"]
    wnid_of = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in meta if int(s["num_children"]) == 0}
    ids = [int(line) for line in files[DEVKIT_TRUTH].decode().split()]
    try:
        return [wnid_of[i] for i in ids]
    except KeyError as err:
        raise UserError(f"{devkit}: validation label {err.args[0]} is not a leaf synset in meta.mat") from None


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)


def prepare_train(archive: Path, out: Path, *, progress: bool = True) -> int:
    tmp = out / ".train.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    with tarfile.open(archive, "r|") as outer:
        for class_tar in tqdm(_members(outer), total=1000, desc="train classes", unit="class", disable=None if progress else True):
            wnid = safe_name(archive, class_tar)
            if not wnid.endswith(".tar"):
                raise UserError(f"{archive}: unexpected member {class_tar.name!r} (expected <wnid>.tar)")
            class_dir = tmp / wnid[: -len(".tar")]
            class_dir.mkdir()
            inner_file: IO[bytes] = outer.extractfile(class_tar)  # type: ignore[assignment]
            with tarfile.open(fileobj=inner_file, mode="r|") as inner:
                for member in _members(inner):
                    extract_member(inner, member, class_dir, f"{archive}:{class_tar.name}")
                    count += 1
    _publish(tmp, out / "train")
    return count


def prepare_val(archive: Path, devkit: Path, out: Path, *, progress: bool = True) -> int:
    labels = read_devkit(devkit)
    tmp = out / ".val.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for wnid in set(labels):
        (tmp / wnid).mkdir()
    count = 0
    with tarfile.open(archive, "r|") as tar:
        for member in tqdm(_members(tar), total=len(labels), desc="val images", unit="img", disable=None if progress else True):
            name = safe_name(archive, member)
            try:
                number = int(name.rsplit("_", 1)[1].split(".")[0])  # ILSVRC2012_val_00000001.JPEG
                wnid = labels[number - 1]
            except (IndexError, ValueError):
                raise UserError(f"{archive}: {member.name!r} is not a numbered validation image") from None
            extract_member(tar, member, tmp / wnid, archive)
            count += 1
    _publish(tmp, out / "val")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data.imagenet", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--archives", type=Path, required=True, help=f"folder holding {TRAIN_TAR}, {VAL_TAR} and {DEVKIT_TAR}")
    parser.add_argument("--out", type=Path, required=True, help="dataset root to create (train/ and val/ go under it)")
    parser.add_argument("--splits", nargs="+", choices=("train", "val"), default=["train", "val"], help="which splits to prepare")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        for name in [DEVKIT_TAR] * ("val" in args.splits) + [TRAIN_TAR] * ("train" in args.splits) + [VAL_TAR] * ("val" in args.splits):
            if not (args.archives / name).is_file():
                raise UserError(f"--archives: {args.archives / name} not found")
        args.out.mkdir(parents=True, exist_ok=True)
        if "val" in args.splits:
            n = prepare_val(args.archives / VAL_TAR, args.archives / DEVKIT_TAR, args.out, progress=args.progress)
            print(f"val: {n} images in {args.out / 'val'}")
        if "train" in args.splits:
            n = prepare_train(args.archives / TRAIN_TAR, args.out, progress=args.progress)
            print(f"train: {n} images in {args.out / 'train'}")
    except (UserError, tarfile.TarError) as err:
        print(f"python -m bench.data.imagenet: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
