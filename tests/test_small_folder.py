"""relu-tanh on any ImageFolder root: decoded at 32 px into memory, grayscale made RGB, bad files
left out as the manifest leaves them, fingerprinted, cached; and a run on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bench.config import RunConfig
from bench.data.cifar import open_image_arrays
from bench.errors import UserError
from bench.harness import relu_tanh


@pytest.fixture
def folder(tmp_path):
    """Two classes; RGB and grayscale files, JPEG and PNG, non-square; one file that is not an image."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for label, name in enumerate(("cats", "dogs")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                if i % 2:
                    Image.fromarray(np.full((40, 64), 60 + 100 * label, np.uint8), "L").save(folder / f"{i}.png")
                else:
                    Image.fromarray(rng.integers(0, 255, (48, 36, 3), dtype=np.uint8)).save(folder / f"{i}.jpg", quality=95)
    (root / "train" / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_an_image_folder_is_read_at_32_px_with_bad_files_left_out(folder, tmp_path):
    config = RunConfig(harness="relu-tanh", data=str(folder), cache_dir=str(tmp_path / "cache"), workers=0, progress=False)
    arrays = open_image_arrays(config)
    assert arrays.train_images.shape == (12, 32, 32, 3) and arrays.test_images.shape == (4, 32, 32, 3)
    assert arrays.train_images.dtype == np.uint8 and arrays.classes == ("cats", "dogs")
    assert sorted(arrays.train_labels.tolist()) == [0] * 6 + [1] * 6
    gray = arrays.train_images[1]  # train/cats/1.png, grayscale 60: three equal channels
    assert np.all(gray == 60)
    described = arrays.describe()
    assert described["bad_count"] == 1 and described["bad"][0]["path"] == "train/dogs/broken.jpg"
    assert described["name"] == "photos" and len(described["manifest_fingerprint"]) == 20 and described["official_cifar10"] is False
    assert list((tmp_path / "cache" / "small-images").glob("*.npz"))  # decoded once
    again = open_image_arrays(config)
    assert again.fingerprint == arrays.fingerprint
    strict = RunConfig(harness="relu-tanh", data=str(folder), cache_dir=str(tmp_path / "cache"), workers=0, progress=False, strict=True)
    with pytest.raises(UserError, match="--strict: 1 bad file"):
        open_image_arrays(strict)


def test_relu_tanh_runs_on_an_image_folder(folder, tmp_path):
    config = RunConfig.with_preset({"harness": "relu-tanh", "data": str(folder), "cache_dir": str(tmp_path / "cache"), "workers": 0,
                                    "progress": False, "out": str(tmp_path / "out"), "batch_size": 4, "relu_tanh_lrs": "0.001", "epochs": 1})
    record = json.loads(relu_tanh.run(config).read_text())
    assert record["status"] == "complete" and record["dataset"]["name"] == "photos"
    assert record["dataset"]["counts"] == {"train": 12, "test": 4} and record["protocol"]["iterations_per_epoch"] == 3


def test_relu_tanh_needs_no_val_folder(folder, tmp_path):
    # Figure 1 is a training error: a root with only train/ is enough (it used to fail: "no decodable images in val/")
    import shutil

    from bench.data.manifest import load_manifest

    shutil.rmtree(folder / "val")
    config = RunConfig.with_preset({"harness": "relu-tanh", "data": str(folder), "cache_dir": str(tmp_path / "cache"), "workers": 0,
                                    "progress": False, "out": str(tmp_path / "out"), "batch_size": 4, "relu_tanh_lrs": "0.001", "epochs": 1})
    record = json.loads(relu_tanh.run(config).read_text())
    assert record["status"] == "complete" and record["dataset"]["counts"] == {"train": 12, "test": 0}
    # the manifest it cached holds no val/: a harness that evaluates still refuses it, from the cache, naming the folder
    with pytest.raises(UserError, match=f"data root {folder} has no val/ folder"):
        load_manifest(folder, tmp_path / "cache", progress=False)
    (folder / "val").mkdir()
    with pytest.raises(UserError, match=f"data root {folder} has no decodable images in val/"):
        load_manifest(folder, tmp_path / "cache", progress=False)
