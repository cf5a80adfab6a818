"""The pipeline contract, the registry and the torchvision pipeline's augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import AugmentSpec, PipelineOptions, create_pipeline, list_pipelines, pipeline_class
from pipelines.spec import ColourStats
from pipelines import torchvision_pipeline as tp
from pipelines.torchvision_pipeline import PaperTransform, SeededSampler, decode_rgb, load_rgb, preprocess
from torchvision.transforms.v2 import functional as F


def make(spec=None, **options):
    return create_pipeline("torchvision", spec or AugmentSpec(), PipelineOptions(**{"batch_size": 8, "workers": 0, **options}))


def test_registry():
    assert "torchvision" in list_pipelines()
    with pytest.raises(ValueError, match="unknown pipeline 'nope'; choose from: .*torchvision"):
        pipeline_class("nope")


def test_train_batches_have_the_contract_shape_and_labels(manifest):
    loader = make().train_loader(manifest.split("train"))
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader) == 48 // 8
    images, labels = batches[0]
    assert images.shape == (8, 3, 227, 227) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.shape == (8,)
    assert loader.num_samples == 48


def test_every_training_sample_once_per_epoch_and_order_changes(manifest):
    split = manifest.split("train")
    sampler_a = SeededSampler(len(split), seed=1, shuffle=True)
    order0 = [i for i, _ in sampler_a]
    sampler_a.set_epoch(1)
    order1 = [i for i, _ in sampler_a]
    assert sorted(order0) == sorted(order1) == list(range(len(split)))
    assert order0 != order1


def test_labels_follow_the_manifest(manifest):
    split = manifest.split("val")
    loader = make().eval_loader(split)
    labels = torch.cat([y for _, y in loader]).tolist()
    assert labels == list(split.labels)


@pytest.mark.parametrize("crop", [227, 224])
def test_crop_sizes_and_ten_views(manifest, crop):
    spec = AugmentSpec(crop=crop)
    p = make(spec)
    x, _ = next(iter(p.train_loader(manifest.split("train"))))
    assert x.shape[-2:] == (crop, crop)
    x, y = next(iter(p.eval_loader(manifest.split("val"), ten_crop=True)))
    assert x.shape == (8, 10, 3, crop, crop) and y.shape == (8,)


def test_ten_views_are_the_corners_centre_and_reflections(manifest):
    spec = AugmentSpec()
    path = manifest.split("val").paths[0]
    base = preprocess(load_rgb(path), 256)
    views = PaperTransform(spec, train=False, ten_crop=True)(load_rgb(path), 0)
    centre = PaperTransform(spec, train=False)(load_rgb(path), 0)
    mean = torch.tensor(spec.colour.mean).view(3, 1, 1)
    std = torch.tensor(spec.colour.std).view(3, 1, 1)
    to_uint8 = lambda v: (v * std + mean).mul(255).round().to(torch.uint8)  # noqa: E731
    assert torch.equal(to_uint8(views[0]), base[:, :227, :227])
    assert torch.equal(to_uint8(views[3]), base[:, 29:, 29:])
    assert torch.equal(views[4], centre)
    for i in range(5):
        assert torch.equal(views[5 + i], views[i].flip(-1))


def test_random_crops_and_flips_come_from_the_seed(manifest):
    spec = AugmentSpec(lighting_sigma=0.0, flip_prob=1.0)
    img = load_rgb(manifest.split("train").paths[0])
    t = PaperTransform(spec, train=True)
    base = preprocess(img, 256)
    seen = set()
    for seed in range(20):
        x = t(img, seed)
        assert torch.equal(x, t(img, seed))
        rng = np.random.default_rng(seed)
        top, left = (int(v) for v in rng.integers(0, 30, size=2))
        expected = base[:, top : top + 227, left : left + 227].flip(-1).float().div(255)
        expected = (expected - torch.tensor(spec.colour.mean).view(3, 1, 1)) / torch.tensor(spec.colour.std).view(3, 1, 1)
        # Resampled from the crop's own input window (crop_window): at most one level off
        # resize-then-crop, on a small share of the values (PIL's fixed-point coefficients).
        levels = ((x - expected) * torch.tensor(spec.colour.std).view(3, 1, 1) * 255).abs()
        assert levels.max() < 1 + 1e-3 and (levels > 0.5).float().mean() < 0.01
        seen.add((top, left))
    assert len(seen) > 15


def test_workers_hand_back_uint8_and_the_loader_normalises(manifest):
    """Issue 14: worker output is the uint8 crop and a 3-number shift; the batch is normalised once, as the one-image reference."""
    spec = AugmentSpec()
    img = load_rgb(manifest.split("train").paths[0])
    t = PaperTransform(spec, train=True)
    crop, shift = t.draw(img, 3)
    assert crop.dtype == torch.uint8 and crop.shape == (3, 227, 227) and shift.shape == (3,) and shift.abs().sum() > 0
    x = t(img, 3)
    expected = (crop.float() / 255 + shift.view(3, 1, 1) - torch.tensor(spec.colour.mean).view(3, 1, 1)) / torch.tensor(spec.colour.std).view(3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-6)


def test_upright_jpeg_is_not_copied_for_exif():
    """No orientation tag: load_rgb returns the decoded image itself (no exif_transpose copy, no convert copy)."""
    import io

    from pipelines import torchvision_pipeline as tp

    buf = io.BytesIO()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(buf, format="JPEG")
    calls = []
    original = tp.ImageOps.exif_transpose
    tp.ImageOps.exif_transpose = lambda img, **kw: calls.append(1) or original(img, **kw)
    try:
        img = tp.load_rgb(buf)
    finally:
        tp.ImageOps.exif_transpose = original
    assert calls == [] and img.size == (30, 20) and img.mode == "RGB"


def test_flip_probability_half():
    spec = AugmentSpec(lighting_sigma=0.0)
    img = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (256, 1))[..., None].repeat(3, axis=2))  # left dark, right bright
    t = PaperTransform(spec, train=True)
    flipped = [bool(t(img, s)[0, 0, 0] > t(img, s)[0, 0, -1]) for s in range(400)]
    assert 0.43 < np.mean(flipped) < 0.57


def test_lighting_shift_matches_sigma_and_eigen_statistics():
    """The per-image shift is constant over pixels and distributed as N(0, sigma^2 M M^T), M = eigvec diag(eigval)."""
    colour = ColourStats()
    spec = AugmentSpec(flip_prob=0.0, lighting_sigma=0.1, colour=colour)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, size=(256, 256, 3), dtype=np.uint8))
    lit, plain = PaperTransform(spec, train=True), PaperTransform(spec.without_augmentation(), train=True)
    std = torch.tensor(colour.std).view(3, 1, 1)
    shifts = []
    for seed in range(3000):
        d = (lit(img, seed) - plain(img, seed)) * std  # back to the [0, 1] pixel scale
        assert torch.allclose(d, d[:, :1, :1].expand_as(d), atol=1e-5)  # one shift for every pixel
        shifts.append(d[:, 0, 0].double().numpy())
    shifts = np.array(shifts)
    m = spec.lighting_matrix()
    expected_cov = 0.1**2 * m @ m.T
    assert np.allclose(shifts.mean(axis=0), 0.0, atol=4 * np.sqrt(np.diag(expected_cov) / len(shifts)).max())
    assert np.allclose(np.cov(shifts.T), expected_cov, rtol=0.1, atol=1e-5)
    # Along each eigenvector the shift's std is sigma * lambda_i.
    proj = shifts @ np.asarray(colour.eigvec)
    assert np.allclose(proj.std(axis=0), 0.1 * np.asarray(colour.eigval), rtol=0.06)


def test_same_seed_same_first_batches_whatever_the_workers(manifest):
    split = manifest.split("train")

    def first_two(seed, workers):
        loader = make(seed=seed, workers=workers).train_loader(split)
        loader.set_epoch(0)
        it = iter(loader)
        out = [next(it), next(it)]
        loader.close()
        return out

    a, b, c = first_two(5, 0), first_two(5, 2), first_two(6, 0)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])


def test_sharding_splits_an_epoch_between_ranks(manifest):
    n = len(manifest.split("train"))
    shards = [list(SeededSampler(n, seed=0, shuffle=True, rank=r, world_size=2)) for r in range(2)]
    indices = [i for shard in shards for i, _ in shard]
    assert sorted(indices) == list(range(n))
    evals = [[i for i, _ in SeededSampler(n - 1, seed=0, shuffle=False, rank=r, world_size=2)] for r in range(2)]
    assert sorted(evals[0] + evals[1]) == list(range(n - 1))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(str(tmp_path / "r.jpg")).size == (20, 40)


def test_the_training_decoder_gives_pils_pixels_on_every_kind_of_file(tmp_path):
    """decode_rgb (torchvision.io, PIL for CMYK and non-JPEG) equals load_rgb bit for bit: grey,
    CMYK, progressive, a PNG named .jpg, and all eight EXIF orientations."""
    from tests.bad_data import _photo

    photo = _photo(64, 48)
    photo.convert("L").save(tmp_path / "grey.jpg", quality=90)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    photo.save(tmp_path / "progressive.jpg", quality=90, progressive=True)
    photo.save(tmp_path / "png_named.jpg", format="PNG")
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo.save(tmp_path / f"exif{orientation}.jpg", quality=90, exif=exif)
    for path in sorted(tmp_path.iterdir()):
        got, want = decode_rgb(str(path)), F.pil_to_tensor(load_rgb(str(path)))
        assert got.dtype == torch.uint8 and torch.equal(got, want), path.name
    assert decode_rgb(str(tmp_path / "exif6.jpg")).shape == (3, 64, 48)  # turned upright


def test_training_crops_of_files_follow_the_pil_reference(manifest):
    """The worker's path (decode_rgb, torch's resize) against resize-then-crop in PIL, flips on:
    the same bound as test_random_crops_and_flips_come_from_the_seed."""
    spec = AugmentSpec(lighting_sigma=0.0)
    t = PaperTransform(spec, train=True)
    for seed, path in enumerate(manifest.split("train").paths[:8]):
        crop, _ = t.draw(decode_rgb(path), seed)
        top, left, flip, _ = spec.draw(seed)
        want = preprocess(load_rgb(path), spec.resize)[:, top : top + spec.crop, left : left + spec.crop]
        levels = (crop.int() - (want.flip(-1) if flip else want).int()).abs()
        assert levels.max() <= 1 and (levels > 0).float().mean() < 0.01


def test_a_cpu_loader_beside_workers_normalises_on_one_thread(manifest, monkeypatch):
    """With worker processes on the cores, the main process normalises on one torch thread (its
    idle OpenMP threads would spin and take a core from the workers) and gives the threads back."""
    seen = []
    real = tp.normalise_batch
    monkeypatch.setattr(tp, "normalise_batch", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for workers, inside in ((1, 1), (0, 2)):
            loader = make(workers=workers).train_loader(manifest.split("train"))
            seen.clear()
            next(iter(loader))
            loader.close()
            assert seen == [inside] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
