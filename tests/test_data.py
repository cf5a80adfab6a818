"""The embedded dataset, the manifest and the colour statistics."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.colour_stats import compute_colour_stats
from bench.data.manifest import load_manifest
from bench.data.synthetic import SyntheticSpec, ensure_synthetic, render
from bench.errors import UserError


def test_generation_is_deterministic_and_imagenet_like():
    spec = SyntheticSpec(classes=10, seed=3)
    a, qa = render(spec, "train", 2, 7)
    b, qb = render(spec, "train", 2, 7)
    assert a == b and qa == qb
    assert render(SyntheticSpec(classes=10, seed=4), "train", 2, 7)[0] != a
    sizes = []
    for i in range(40):
        data, q = render(spec, "train", i % 10, i)
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.mode == "RGB" and 85 <= q <= 95
        sizes.append(img.size)
    w, h = np.array(sizes).T
    assert 420 < np.median(np.maximum(w, h)) < 580 and 320 < np.median(np.minimum(w, h)) < 430
    assert len(set(sizes)) > 30  # varied sizes


def test_dataset_layout_and_reuse(small_root, cache_dir):
    assert sorted(p.name for p in (small_root / "train").iterdir()) == ["class_000", "class_001", "class_002", "class_003"]
    assert len(list((small_root / "train").rglob("*.jpg"))) == 48
    assert len(list((small_root / "val").rglob("*.jpg"))) == 16
    stamp = (small_root / "DATASET.json").stat().st_mtime_ns
    assert ensure_synthetic(SyntheticSpec(classes=4, train_per_class=12, val_per_class=4), cache_dir, progress=False) == small_root
    assert (small_root / "DATASET.json").stat().st_mtime_ns == stamp
    assert not [p for p in (cache_dir / "datasets").iterdir() if "partial" in p.name]


def test_manifest_lists_samples_in_imagefolder_label_order(small_root, tmp_path):
    m = load_manifest(small_root, tmp_path, progress=False)
    assert m.classes == ("class_000", "class_001", "class_002", "class_003")
    train = m.split("train")
    assert len(train) == 48 and train.num_classes == 4
    for path, label in zip(train.paths, train.labels):
        assert Path(path).parent.name == m.classes[label]
    assert list(train.labels) == sorted(train.labels)
    assert all(os.path.isabs(p) for p in train.paths)
    assert m.counts() == {"train": {"ok": 48, "bad": 0}, "val": {"ok": 16, "bad": 0}}


def test_manifest_is_cached_and_invalidated_by_changes(small_copy, tmp_path):
    cache = tmp_path / "cache"
    first = load_manifest(small_copy, cache, progress=False)
    cached = cache / "manifests" / f"{first.fingerprint}.json"
    assert cached.is_file()
    # Mark the cached copy: a second load that reads the cache returns the mark.
    data = json.loads(cached.read_text())
    data["bad"]["0"] = "from-cache"  # columnar: reasons by index
    cached.write_text(json.dumps(data))
    assert load_manifest(small_copy, cache, progress=False).entries[0].reason == "from-cache"
    victim = next((small_copy / "train" / "class_001").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")  # size changes: a new fingerprint, checked afresh
    again = load_manifest(small_copy, cache, progress=False)
    assert again.fingerprint != first.fingerprint
    assert all(e.reason != "from-cache" for e in again.entries)


def test_manifest_leaves_out_a_corrupt_file_with_its_reason(small_copy, tmp_path):
    victim = sorted((small_copy / "train" / "class_002").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated JPEG
    (small_copy / "train" / "class_000" / "notes.txt").write_text("not an image")
    m = load_manifest(small_copy, tmp_path, progress=False)
    bad = {e.path: e.reason for e in m.bad()}
    assert set(bad) == {f"train/class_002/{victim.name}", "train/class_000/notes.txt"}
    assert "OSError" in bad[f"train/class_002/{victim.name}"] or "truncated" in bad[f"train/class_002/{victim.name}"]
    assert "not an image file name" in bad["train/class_000/notes.txt"]
    train = m.split("train")
    assert str(victim) not in train.paths and len(train) == 47


def test_manifest_errors_name_the_path(tmp_path):
    with pytest.raises(UserError, match=f"data root {tmp_path / 'missing'} does not exist"):
        load_manifest(tmp_path / "missing", tmp_path)
    (tmp_path / "flat").mkdir()
    with pytest.raises(UserError, match="has no train/ folder"):
        load_manifest(tmp_path / "flat", tmp_path)


def test_val_class_unknown_to_train_is_bad(small_copy, tmp_path):
    extra = small_copy / "val" / "class_999"
    extra.mkdir()
    Image.new("RGB", (32, 32)).save(extra / "x.jpg")
    m = load_manifest(small_copy, tmp_path, progress=False)
    assert [(e.path, e.reason) for e in m.bad()] == [("val/class_999/x.jpg", "class 'class_999' is not in train/")]


def test_colour_stats_of_a_known_distribution(tmp_path):
    # Pixels drawn with a known covariance: the computed eigen-decomposition must recover it.
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    cov = np.array([[0.04, 0.03, 0.02], [0.03, 0.04, 0.03], [0.02, 0.03, 0.04]])
    for split in ("train", "val"):
        d = root / split / "a"
        d.mkdir(parents=True)
        for i in range(6):
            px = rng.multivariate_normal([0.5, 0.45, 0.4], cov, size=(256, 256))
            Image.fromarray((np.clip(px, 0, 1) * 255).round().astype(np.uint8)).save(d / f"{i}.png")
    m = load_manifest(root, tmp_path / "cache", progress=False)
    stats = compute_colour_stats(m, progress=False)
    assert np.allclose(stats.mean, [0.5, 0.45, 0.4], atol=0.01)
    expected_val, expected_vec = np.linalg.eigh(cov)
    assert np.allclose(stats.eigval, expected_val[::-1], rtol=0.1, atol=2e-3)
    assert abs(np.dot(np.asarray(stats.eigvec)[:, 0], expected_vec[:, -1])) > 0.99
    assert stats.source == f"computed:{m.fingerprint}"
