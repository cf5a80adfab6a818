"""ILSVRC-2012 preparation from (miniature) original archives, and refusal of unsafe members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from bench.data import imagenet
from bench.errors import UserError

WNIDS = ["n01440764", "n01443537"]


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def make_archives(folder: Path, *, evil_member: str | None = None) -> None:
    jpeg = b"\xff\xd8 not decoded here"
    with tarfile.open(folder / imagenet.TRAIN_TAR, "w") as outer:
        for wnid in WNIDS:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as inner:
                for i in range(3):
                    add_bytes(inner, f"{wnid}_{i}.JPEG", jpeg)
                if evil_member and wnid == WNIDS[1]:
                    add_bytes(inner, evil_member, b"owned")
            add_bytes(outer, f"{wnid}.tar", buf.getvalue())
    with tarfile.open(folder / imagenet.VAL_TAR, "w") as tar:
        for i in range(1, 5):
            add_bytes(tar, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg)
    synsets = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    synsets[0] = (1, WNIDS[0], 0)
    synsets[1] = (2, WNIDS[1], 0)
    synsets[2] = (1001, "n00001740", 2)  # an inner node: not a class
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    with tarfile.open(folder / imagenet.DEVKIT_TAR, "w:gz") as tar:
        add_bytes(tar, imagenet.DEVKIT_META, meta.getvalue())
        add_bytes(tar, imagenet.DEVKIT_TRUTH, b"2\n1\n1\n2\n")


def test_prepares_imagefolder_layout(tmp_path):
    make_archives(tmp_path)
    out = tmp_path / "imagenet"
    assert imagenet.main(["--archives", str(tmp_path), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "train" / WNIDS[0]).iterdir()) == [f"{WNIDS[0]}_{i}.JPEG" for i in range(3)]
    assert sorted(p.name for p in (out / "val" / WNIDS[1]).iterdir()) == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000004.JPEG"]
    assert sorted(p.name for p in (out / "val" / WNIDS[0]).iterdir()) == ["ILSVRC2012_val_00000002.JPEG", "ILSVRC2012_val_00000003.JPEG"]
    assert not list(out.glob(".*partial"))


@pytest.mark.parametrize("evil", ["../../escaped.JPEG", "/tmp/absolute.JPEG", "sub/../../up.JPEG"])
def test_refuses_members_outside_the_target(tmp_path, evil, capsys):
    make_archives(tmp_path, evil_member=evil)
    out = tmp_path / "imagenet"
    assert imagenet.main(["--archives", str(tmp_path), "--out", str(out), "--splits", "train", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "leaves the target folder" in err and err.count("\n") == 1
    assert not (out / "train").exists()  # nothing half-written is published
    assert not list(tmp_path.rglob("escaped.JPEG")) and not Path("/tmp/absolute.JPEG").exists()


def test_refuses_links(tmp_path):
    with tarfile.open(tmp_path / "x.tar", "w") as tar:
        info = tarfile.TarInfo("link.JPEG")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with tarfile.open(tmp_path / "x.tar") as tar:
        with pytest.raises(UserError, match="not a regular file"):
            imagenet.safe_name("x.tar", tar.getmembers()[0])


def test_missing_archive_is_named(tmp_path, capsys):
    assert imagenet.main(["--archives", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / imagenet.DEVKIT_TAR} not found" in capsys.readouterr().err
