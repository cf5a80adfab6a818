"""FFCV's .beton conversion: round trip, the cache (reuse, invalidation), a conversion killed half way, bad files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

try:
    from ffcv.pipeline.compiler import Compiler

    from pipelines.ffcv_convert import ConversionOptions, beton_path, ensure_beton
except (ImportError, OSError) as err:  # FFCV or its system libraries are missing: tests/test_ffcv_unavailable.py covers that
    pytest.skip(f"FFCV is not available: {err}", allow_module_level=True)

from bench.data.manifest import load_manifest
from bench.data.synthetic import SyntheticSpec, ensure_synthetic
from bench.errors import UserError
from pipelines.base import Split
from pipelines.torchvision_pipeline import load_rgb, preprocess
from tests.conftest import REPO


@pytest.fixture(scope="module")
def beton_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("betons")


def reference(path: str) -> np.ndarray:
    """The torchvision pipeline's preprocessing of ``path``, uint8 H x W x 3."""
    return preprocess(load_rgb(path), 256).permute(1, 2, 0).numpy()


def read_beton(path) -> tuple[np.ndarray, np.ndarray]:
    """Every stored image and label, in file order, through FFCV's own decoder (compiler off)."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    enabled = Compiler.is_enabled
    Compiler.set_enabled(False)
    try:
        loader = Loader(str(path), batch_size=16, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                        pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
    finally:
        Compiler.set_enabled(enabled)
    images, labels = [], []
    for x, y in loader:
        images.append(x.copy())  # FFCV reuses its buffers
        labels.append(y.copy())
    return np.concatenate(images), np.concatenate(labels).ravel()


def test_raw_round_trip_is_exact(manifest, beton_cache):
    split = manifest.split("train")
    beton = ensure_beton(split, ConversionOptions(write_mode="raw"), beton_cache, workers=2, progress=False)
    images, labels = read_beton(beton.path)
    assert len(images) == len(split) == 48
    assert labels.tolist() == list(split.labels)
    for image, path in zip(images, split.paths):
        assert np.array_equal(image, reference(path))


def test_jpeg_round_trip_is_within_the_quality_error(manifest, beton_cache):
    """JPEG q90 (OpenCV's encoder, 4:2:0 chroma, libjpeg-turbo's decoder) against the exact pixels.

    Measured on the 48 small training images: max |error| 71, mean 2.70 grey levels (q95: 66 and
    2.50; q75: 91 and 3.40; the saturated, striped synthetic objects are hard on chroma
    subsampling). Asserted: max <= 80, mean <= 3.0, and a lower quality errs more.
    """
    split = manifest.split("train")
    errors = {}
    for quality in (75, 90):
        beton = ensure_beton(split, ConversionOptions(write_mode="jpg", jpeg_quality=quality), beton_cache, workers=2, progress=False)
        images, labels = read_beton(beton.path)
        assert len(images) == 48 and labels.tolist() == list(split.labels)
        exact = np.stack([reference(p) for p in split.paths])
        errors[quality] = np.abs(images.astype(np.int16) - exact)
    assert errors[90].max() <= 80 and errors[90].mean() <= 3.0
    assert errors[75].mean() > errors[90].mean()


def test_max_side_rule_keeps_the_aspect_and_caps_the_longer_side(manifest, beton_cache):
    from ffcv.reader import Reader

    split = manifest.split("val")
    options = ConversionOptions(write_mode="raw", resize_rule="max-side", max_side=300)
    beton = ensure_beton(split, options, beton_cache, progress=False)
    meta = Reader(str(beton.path)).metadata["f0"]  # fields are stored by position: f0 the image
    for (w, h), path in zip(zip(meta["width"], meta["height"]), split.paths):
        ow, oh = load_rgb(path).size
        assert max(w, h) == 300 and abs(w / h - ow / oh) < 0.01


def test_an_unchanged_dataset_is_converted_once(manifest, beton_cache):
    split = manifest.split("val")
    options = ConversionOptions(write_mode="jpg", jpeg_quality=85)
    first = ensure_beton(split, options, beton_cache, progress=False)
    mtime = first.path.stat().st_mtime_ns
    second = ensure_beton(split, options, beton_cache, progress=False)
    assert first.converted and first.seconds > 0
    assert not second.converted and second.seconds == 0 and second.path == first.path
    assert first.path.stat().st_mtime_ns == mtime


def test_the_cache_key_follows_the_data_the_split_and_the_options(small_copy, manifest, tmp_path):
    split = manifest.split("val")
    base = ConversionOptions(write_mode="jpg")
    paths = {beton_path(tmp_path, split, base)}
    for options in (ConversionOptions(write_mode="jpg", jpeg_quality=91), ConversionOptions(write_mode="raw"),
                    ConversionOptions(write_mode="jpg", resize_rule="max-side"),
                    ConversionOptions(write_mode="jpg", resize_rule="max-side", max_side=600), ConversionOptions(write_mode="jpg", resize=288)):
        paths.add(beton_path(tmp_path, split, options))
    paths.add(beton_path(tmp_path, manifest.split("train"), base))
    assert len(paths) == 7
    # Options that do not change the stored bytes do not change the key.
    assert beton_path(tmp_path, split, ConversionOptions(write_mode="raw", jpeg_quality=50)) == beton_path(tmp_path, split, ConversionOptions(write_mode="raw"))
    assert beton_path(tmp_path, split, ConversionOptions(write_mode="jpg", max_side=999)) == beton_path(tmp_path, split, base)
    # A changed file gives a new manifest fingerprint, hence a new .beton.
    target = next(small_copy.glob("val/*/*.jpg"))
    target.write_bytes(target.read_bytes())
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = load_manifest(small_copy, tmp_path / "m", progress=False).split("val")
    assert changed.fingerprint != split.fingerprint
    assert beton_path(tmp_path, changed, base) not in paths


CONVERT_IN_A_CHILD = """
import sys
from bench.data.manifest import load_manifest
from bench.data.synthetic import SyntheticSpec, ensure_synthetic
from pipelines.ffcv_convert import ConversionOptions, ensure_beton
split = load_manifest(sys.argv[1], sys.argv[2], progress=False).split("train")
ensure_beton(split, ConversionOptions(write_mode="raw"), sys.argv[2], workers=1, progress=True)
"""


@pytest.fixture(scope="module")
def larger_root(cache_dir):
    """160 training images (the same spec as tests/test_training.py's, so it is generated once): a
    conversion with one worker takes several seconds, long enough to be caught half way."""
    return ensure_synthetic(SyntheticSpec(classes=4, train_per_class=40, val_per_class=10, seed=1), cache_dir, progress=False)


def test_a_conversion_killed_half_way_leaves_nothing_complete(larger_root, tmp_path):
    """SIGKILL to a real conversion's process group once part of its data is on disk (the
    temporary file has grown past FFCV's first 8 MiB page, of about 32 MiB); then no file at
    the final name, and the next conversion completes and removes what the killed one left."""
    cache = tmp_path / "cache"
    split = load_manifest(larger_root, cache, progress=False).split("train")
    final = beton_path(cache, split, ConversionOptions(write_mode="raw"))
    child = subprocess.Popen(
        [sys.executable, "-c", CONVERT_IN_A_CHILD, str(larger_root), str(cache)],
        cwd=REPO, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    written = 0
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in final.parent.glob(f".{final.name}.*.partial")] if final.parent.exists() else []
        written = max(sizes, default=0)
        if written > 8 << 20:
            os.killpg(child.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL, f"the conversion ended on its own ({written} bytes seen)"
    assert not final.exists()
    leftovers = list(final.parent.glob(f".{final.name}.*.partial"))
    assert leftovers

    again = ensure_beton(split, ConversionOptions(write_mode="raw"), cache, workers=2, progress=False)
    assert again.converted and again.path == final
    assert final.stat().st_size > written
    images, labels = read_beton(final)
    assert len(images) == len(split) == 160 and labels.tolist() == list(split.labels)
    assert not any(p.exists() for p in leftovers)


def test_a_file_that_breaks_after_the_manifest_is_a_user_error(small_copy, tmp_path):
    manifest = load_manifest(small_copy, tmp_path, progress=False)
    split = manifest.split("val")
    broken = split.paths[5]
    with open(broken, "r+b") as f:
        f.truncate(100)
    with pytest.raises(UserError, match=re.escape(f"cannot convert {broken} for FFCV: ")):
        ensure_beton(split, ConversionOptions(write_mode="jpg"), tmp_path, workers=2, progress=False)
    assert not list((tmp_path / "ffcv").glob("*.beton")) and not list((tmp_path / "ffcv").glob("*.partial"))


def test_a_raw_conversion_that_cannot_fit_is_refused_before_it_starts(manifest, tmp_path):
    """As many samples as would need more than this disk's free space (the files are never read)."""
    val = manifest.split("val")
    too_many = shutil.disk_usage(tmp_path).free // (256 * 256 * 3) + 1
    huge = Split("huge", val.paths[:1] * too_many, val.labels[:1] * too_many, val.num_classes, val.fingerprint)
    with pytest.raises(UserError, match=r"converting huge \(\d+ images\) to raw pixels for FFCV needs .* GiB free: store JPEG instead"):
        ensure_beton(huge, ConversionOptions(write_mode="raw"), tmp_path, progress=False)
    assert not list((tmp_path / "ffcv").glob("*beton*.partial")) and not list((tmp_path / "ffcv").glob("*.beton"))


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="write_mode 'png'"):
        ConversionOptions(write_mode="png")
    with pytest.raises(ValueError, match="jpeg_quality must be in"):
        ConversionOptions(jpeg_quality=0)
    with pytest.raises(ValueError, match="max_side must be in"):
        ConversionOptions(resize_rule="max-side", max_side=100)


def test_auto_storage_is_raw_only_within_the_stated_share_of_the_free_disk(manifest, tmp_path):
    """The default (--ffcv-write-mode auto): raw at 256 x 256 when it fits in RAW_DISK_SHARE of the free disk, else the paper's
    256 px as JPEG q90, with one line saying so. ImageNet's 1,281,167 training images need 234.6 GiB raw."""
    from pipelines.ffcv_convert import RAW_DISK_SHARE, choose_storage

    val = manifest.split("val")
    imagenet = Split("train", val.paths[:1] * 1_281_167, val.labels[:1] * 1_281_167, val.num_classes, val.fingerprint)
    raw_bytes = 1_281_167 * 256 * 256 * 3
    roomy = choose_storage(imagenet, ConversionOptions(write_mode="auto"), tmp_path, free=int(raw_bytes / RAW_DISK_SHARE) + 1)
    assert roomy.options == ConversionOptions(write_mode="raw") and "raw pixels, 256x256 (234.6 GiB" in roomy.line
    tight = choose_storage(imagenet, ConversionOptions(write_mode="auto"), tmp_path, free=int(raw_bytes / RAW_DISK_SHARE) - 1)
    assert tight.options == ConversionOptions(write_mode="jpg", jpeg_quality=90, resize_rule="paper", resize=256)
    assert tight.line.count("\n") == 0 and "JPEG q90, 256x256 for train (1281167 images): raw pixels would need 234.6 GiB" in tight.line
    assert tight.describe() == {"requested": "auto", "chosen": "jpg", "raw_disk_share": RAW_DISK_SHARE, "line": tight.line}


def test_auto_storage_reuses_an_existing_beton_and_records_the_choice(manifest, beton_cache, capsys):
    """A raw .beton already converted is reused even when the disk is now too full for another (its own bytes fill it)."""
    from pipelines.ffcv_convert import choose_storage

    val = manifest.split("val")
    beton = ensure_beton(val, ConversionOptions(write_mode="raw"), beton_cache, workers=2, progress=False)
    choice = choose_storage(val, ConversionOptions(write_mode="auto"), beton_cache, free=0)
    assert choice.options.write_mode == "raw" and "converted earlier" in choice.line
    auto = ensure_beton(val, ConversionOptions(write_mode="auto"), beton_cache, workers=2, progress=False)
    assert auto.path == beton.path and not auto.converted and auto.choice.options.write_mode == "raw"


def test_the_pipeline_defaults_to_auto_and_records_the_choice(manifest, tmp_path, capsys):
    from pipelines.base import PipelineOptions
    from pipelines.ffcv_pipeline import FfcvPipeline
    from pipelines.spec import AugmentSpec

    pipeline = FfcvPipeline(AugmentSpec(), PipelineOptions(batch_size=4, workers=1, cache_dir=str(tmp_path), extra={"compile": False}))
    assert pipeline.describe()["storage"] == {"write_mode": "auto"} and pipeline.describe()["storage_choice"] is None
    pipeline.eval_loader(manifest.split("val"))
    described = pipeline.describe()
    assert described["storage_choice"]["chosen"] == "raw" and described["storage"]["write_mode"] == "raw"  # 16 small images fit
    [line] = [l for l in capsys.readouterr().out.splitlines() if l.startswith("FFCV storage:")]
    assert line == described["storage_choice"]["line"] and "at most 50% of the" in line
