"""A dataset holding every awkward case a real image collection has (issue: reliability).

``make_bad_dataset(root)`` copies a small clean dataset and adds, to ``train/``:
each case below, named after it. ``EXPECTED_BAD`` and ``EXPECTED_OK`` say how the manifest
must classify them.
"""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
from PIL import Image

DECODABLE = ("grayscale.jpg", "cmyk.jpg", "progressive.jpg", "png_named.jpg", "exif_rotated.jpg")
EXPECTED_BAD = {
    "truncated.jpg": "truncated",
    "zero_bytes.jpg": "cannot identify",
    "text.jpg": "cannot identify",
    "bomb.jpg": "pixels",
}


def _photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1).astype(np.float32)
    img += rng.normal(0, 10, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def bomb_jpeg(width: int = 30000, height: int = 30000) -> bytes:
    """A small JPEG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""
    data = bytearray(_jpeg(_photo(16, 16)))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC2):  # SOF0 / SOF2: precision(1) height(2) width(2)
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def make_bad_dataset(clean: Path, root: Path) -> Path:
    shutil.copytree(clean, root)
    cls = root / "train" / "class_000"
    photo = _photo()
    full = _jpeg(photo)
    (cls / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (cls / "zero_bytes.jpg").write_bytes(b"")
    (cls / "text.jpg").write_text("this is not an image\n")
    (cls / "bomb.jpg").write_bytes(bomb_jpeg())
    photo.convert("L").save(cls / "grayscale.jpg", quality=90)
    photo.convert("CMYK").save(cls / "cmyk.jpg", quality=90)
    photo.save(cls / "progressive.jpg", quality=90, progressive=True)
    photo.save(cls / "png_named.jpg", format="PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    photo.save(cls / "exif_rotated.jpg", quality=90, exif=exif)
    (root / "train" / "class_empty").mkdir()  # a class with no images
    return root
