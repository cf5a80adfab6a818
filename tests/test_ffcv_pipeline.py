"""The FFCV pipeline: the contract, equivalence with the torchvision pipeline, the paper's
augmentation as drawn, seeding, sharding, the compiled path, threads, a real CLI run.

Most tests switch FFCV's compiler off (``extra={"compile": False}``: the same pipeline,
interpreted) for speed; ``test_the_compiled_pipeline_gives_the_interpreted_ones_batches``
runs the compiled path and holds it to the interpreted one, bit for bit.
"""

from __future__ import annotations

import gc
import hashlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import fields

import numpy as np
import pytest
import torch

try:
    from pipelines.ffcv_ops import EpochDraws
    from pipelines.ffcv_ops.draws import CROP_LEFT, CROP_TOP
    from pipelines.ffcv_ops.flip import flip_choices
    from pipelines.ffcv_ops.lighting import lighting_shifts
    from pipelines.ffcv_pipeline import FfcvPipeline, FfcvSettings
except (ImportError, OSError) as err:  # FFCV or its system libraries are missing: tests/test_ffcv_unavailable.py covers that
    pytest.skip(f"FFCV is not available: {err}", allow_module_level=True)

from bench.config import RunConfig
from bench.errors import UserError
from pipelines import AugmentSpec, PipelineOptions, Split, create_pipeline, pipeline_class
from pipelines.spec import ColourStats
from pipelines.torchvision_pipeline import SeededSampler, load_rgb, preprocess
from tests.conftest import REPO

NO_AUGMENTATION = AugmentSpec().without_augmentation()
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def beton_cache(tmp_path_factory):
    """One cache for the module: each (split, storage) is converted once."""
    return tmp_path_factory.mktemp("betons")


@pytest.fixture
def make(beton_cache):
    def make(pipeline="ffcv", spec=None, *, compile=False, write_mode="raw", **options):
        extra = {"compile": compile, "write_mode": write_mode} if pipeline == "ffcv" else {}
        options = {"batch_size": 8, "workers": 1, "cache_dir": str(beton_cache), "extra": extra, **options}
        return create_pipeline(pipeline, spec or AugmentSpec(), PipelineOptions(**options))

    return make


def epoch_batches(loader, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def stacked(batches) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def to_pixels(x: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """Normalised images back to the 0..255 scale (channel axis -3)."""
    mean = torch.tensor(spec.colour.mean).view(3, 1, 1)
    std = torch.tensor(spec.colour.std).view(3, 1, 1)
    return (x * std + mean) * 255


def reference_train(path: str, index: int, epoch: int, spec: AugmentSpec, seed: int) -> torch.Tensor:
    """The spec applied with the FFCV pipeline's draws for (seed, epoch, index), the torchvision pipeline's way."""
    draws = EpochDraws(seed)
    draws.epoch = epoch
    i = np.array([index])
    edge = spec.resize - spec.crop
    top, left = int(draws.integers(i, CROP_TOP, edge)[0]), int(draws.integers(i, CROP_LEFT, edge)[0])
    x = preprocess(load_rgb(path), spec.resize)[:, top : top + spec.crop, left : left + spec.crop]
    if spec.flip_prob > 0 and flip_choices(draws, i, spec.flip_prob)[0]:
        x = x.flip(-1)
    x = x.float().div_(255.0)
    if spec.lighting_sigma > 0:
        x += torch.from_numpy(lighting_shifts(draws, i, spec.lighting_matrix(), spec.lighting_sigma)[0]).view(3, 1, 1)
    return x.sub_(torch.tensor(spec.colour.mean).view(3, 1, 1)).div_(torch.tensor(spec.colour.std).view(3, 1, 1))


# The contract


def test_the_registry_imports_ffcv_and_keeps_torchs_threads(make, manifest):
    torch.set_num_threads(2)
    assert pipeline_class("ffcv") is FfcvPipeline
    assert torch.get_num_threads() == 2
    loader = make(workers=1).train_loader(manifest.split("train"))  # FFCV would set torch to 1 thread, twice
    assert torch.get_num_threads() == 2
    next(iter(loader))
    assert torch.get_num_threads() == 2
    loader.close()


def test_train_batches_have_the_contract_shape(make, manifest):
    loader = make().train_loader(manifest.split("train"))
    batches = epoch_batches(loader)
    assert len(batches) == len(loader) == 6 and loader.num_samples == 48
    images, labels = batches[0]
    assert images.shape == (8, 3, 227, 227) and images.dtype == torch.float32 and images.is_contiguous()
    assert labels.shape == (8,) and labels.dtype == torch.int64
    assert images.device.type == labels.device.type == "cpu"


def test_the_last_partial_batch_is_kept_when_asked(make, manifest):
    loader = make(batch_size=10, drop_last=False).train_loader(manifest.split("train"))
    sizes = [len(y) for _, y in epoch_batches(loader)]
    assert sizes == [10, 10, 10, 10, 8] and loader.num_samples == 48
    evaluation = make(batch_size=10).eval_loader(manifest.split("val"))
    assert [len(y) for _, y in epoch_batches(evaluation)] == [10, 6] and evaluation.num_samples == 16


@pytest.mark.parametrize("crop", [227, 224])
def test_crop_sizes_and_ten_views(make, manifest, crop):
    p = make(spec=AugmentSpec(crop=crop))
    x, _ = next(iter(p.train_loader(manifest.split("train"))))
    assert x.shape == (8, 3, crop, crop)
    x, y = next(iter(p.eval_loader(manifest.split("val"), ten_crop=True)))
    assert x.shape == (8, 10, 3, crop, crop) and y.shape == (8,)


def test_order_and_labels_are_the_torchvision_pipelines(make, manifest):
    split = manifest.split("train")
    ffcv, tv = make(seed=4).train_loader(split), make("torchvision", seed=4, workers=0).train_loader(split)
    for epoch in (0, 1):
        assert torch.equal(stacked(epoch_batches(ffcv, epoch))[1], stacked(epoch_batches(tv, epoch))[1])
    val = manifest.split("val")
    assert stacked(epoch_batches(make().eval_loader(val)))[1].tolist() == list(val.labels)


def test_batches_stay_valid_while_later_ones_load(make, manifest):
    """FFCV reuses its buffers a few batches on; the pipeline must not hand those out."""
    loader = make(batch_size=4).train_loader(manifest.split("train"))
    kept = epoch_batches(loader)  # 12 batches held at once
    again = epoch_batches(loader)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(kept, again))


# Equivalence with the torchvision pipeline


@pytest.mark.parametrize("ten_crop", [False, True])
def test_raw_storage_evaluates_exactly_as_torchvision(make, manifest, ten_crop):
    """Raw .beton, evaluation views (centre, ten): measured max |difference| 0, bit for bit."""
    val = manifest.split("val")
    x_ffcv, y_ffcv = stacked(epoch_batches(make(spec=NO_AUGMENTATION).eval_loader(val, ten_crop=ten_crop)))
    x_tv, y_tv = stacked(epoch_batches(make("torchvision", spec=NO_AUGMENTATION, workers=0).eval_loader(val, ten_crop=ten_crop)))
    assert torch.equal(y_ffcv, y_tv)
    assert torch.equal(x_ffcv, x_tv)


def test_jpeg_storage_evaluates_as_torchvision_within_the_jpeg_error(make, manifest):
    """JPEG q90 .beton against the torchvision pipeline on the same files, centre crops, in grey
    levels (0..255): measured max 66, mean 3.13 on the 16 small validation images (68 and 2.80
    on the 48 training images). Asserted: max <= 80, mean <= 3.5."""
    val = manifest.split("val")
    x_ffcv, _ = stacked(epoch_batches(make(spec=NO_AUGMENTATION, write_mode="jpg").eval_loader(val)))
    x_tv, _ = stacked(epoch_batches(make("torchvision", spec=NO_AUGMENTATION, workers=0).eval_loader(val)))
    diff = (to_pixels(x_ffcv, NO_AUGMENTATION) - to_pixels(x_tv, NO_AUGMENTATION)).abs()
    assert diff.max() <= 80 and diff.mean() <= 3.5


def test_max_side_storage_evaluates_as_torchvision_within_the_resampling_difference(make, manifest):
    """Images stored whole (longer side <= 512) and brought to 256 when loading by FFCV's
    centre-crop decoder: the central square resized with OpenCV's area resampling, where the
    torchvision pipeline resizes with PIL's antialiased bilinear and then crops (a window up
    to half a pixel apart). Raw storage, centre crops, grey levels: measured max 147 (at the
    synthetic objects' sharp edges), mean 3.06. Asserted: max <= 170, mean <= 3.5."""
    val = manifest.split("val")
    ffcv = make(spec=NO_AUGMENTATION, extra={"compile": False, "write_mode": "raw", "resize_rule": "max-side"})
    x_ffcv, _ = stacked(epoch_batches(ffcv.eval_loader(val)))
    x_tv, _ = stacked(epoch_batches(make("torchvision", spec=NO_AUGMENTATION, workers=0).eval_loader(val)))
    diff = (to_pixels(x_ffcv, NO_AUGMENTATION) - to_pixels(x_tv, NO_AUGMENTATION)).abs()
    assert diff.max() <= 170 and diff.mean() <= 3.5


@pytest.mark.parametrize("spec", [NO_AUGMENTATION, AugmentSpec(), AugmentSpec(crop=224, flip_prob=1.0, lighting_sigma=0.3)], ids=["off", "paper", "strong"])
def test_training_applies_the_spec_at_the_drawn_values(make, manifest, spec):
    """Every training image equals the torchvision pipeline's operations (crop, flip, lighting in
    [0, 1], normalisation) applied to the same file with this pipeline's draws: bit for bit (raw)."""
    split = manifest.split("train")
    loader = make(spec=spec, seed=9).train_loader(split)
    x, _ = stacked(epoch_batches(loader, epoch=2))
    sampler = SeededSampler(len(split), seed=9, shuffle=True)
    sampler.set_epoch(2)
    for row, index in enumerate(sampler.indices()):
        assert torch.equal(x[row], reference_train(split.paths[index], index, 2, spec, seed=9)), f"sample {index}"


# The draws


def test_lighting_shifts_follow_sigma_and_the_eigen_statistics():
    """Over 20000 samples: shift ~ N(0, sigma^2 M M^T), M = eigvec diag(eigval); its std along
    eigenvector i is sigma * lambda_i; independent across epochs."""
    spec = AugmentSpec(lighting_sigma=0.1, colour=ColourStats())
    draws = EpochDraws(seed=0)
    indices = np.arange(20000)
    shifts = lighting_shifts(draws, indices, spec.lighting_matrix(), 0.1).astype(np.float64)
    m = spec.lighting_matrix()
    expected_cov = 0.1**2 * m @ m.T
    assert np.allclose(shifts.mean(axis=0), 0.0, atol=4 * np.sqrt(np.diag(expected_cov) / len(shifts)).max())
    assert np.allclose(np.cov(shifts.T), expected_cov, rtol=0.05, atol=1e-6)
    proj = shifts @ np.asarray(spec.colour.eigvec)
    assert np.allclose(proj.std(axis=0), 0.1 * np.asarray(spec.colour.eigval), rtol=0.03)
    draws.epoch = 1
    later = lighting_shifts(draws, indices, m, 0.1)
    assert abs(np.corrcoef(shifts[:, 0], later[:, 0])[0, 1]) < 0.03


def test_crop_offsets_are_uniform_and_flips_follow_their_probability():
    draws = EpochDraws(seed=3)
    indices = np.arange(30000)
    counts = np.bincount(draws.integers(indices, CROP_TOP, 29), minlength=30)
    assert len(counts) == 30 and counts.min() > 850 and counts.max() < 1150  # 1000 expected each
    assert abs(np.corrcoef(draws.integers(indices, CROP_TOP, 29), draws.integers(indices, CROP_LEFT, 29))[0, 1]) < 0.03
    assert 0.48 < flip_choices(draws, indices, 0.5).mean() < 0.52
    assert 0.23 < flip_choices(draws, indices, 0.25).mean() < 0.27


# Seeding


def test_the_seed_fixes_every_epoch_and_set_epoch_reaches_any_directly(make, manifest):
    split = manifest.split("train")
    straight = make(seed=5, workers=1).train_loader(split)
    epochs = [stacked(epoch_batches(straight, e)) for e in range(3)]
    resumed = make(seed=5, workers=2).train_loader(split)  # another loader, straight to epoch 2
    x, y = stacked(epoch_batches(resumed, 2))
    assert torch.equal(x, epochs[2][0]) and torch.equal(y, epochs[2][1])
    assert not torch.equal(epochs[0][0], epochs[1][0])
    other = make(seed=6, workers=1).train_loader(split)
    assert not torch.equal(stacked(epoch_batches(other, 0))[0], epochs[0][0])


# Sharding


def fingerprints(batches) -> list[str]:
    return [hashlib.sha256(x.numpy().tobytes()).hexdigest() for images, _ in batches for x in images]


def test_two_ranks_see_every_sample_once_per_epoch(make, manifest):
    """Crop 256 of 256 with flip and lighting off makes a training image its sample's identity."""
    spec = AugmentSpec(crop=256, flip_prob=0.0, lighting_sigma=0.0)
    train = manifest.split("train")
    everything = set(fingerprints(epoch_batches(make(spec=spec).eval_loader(train))))
    assert len(everything) == 48
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            loader = make(spec=spec, rank=rank, world_size=2, drop_last=False, seed=2).train_loader(train)
            assert loader.num_samples == 24
            seen += fingerprints(epoch_batches(loader, epoch))
        assert sorted(seen) == sorted(everything)
    val = manifest.split("val")
    odd = Split("val15", val.paths[:15], val.labels[:15], val.num_classes, val.fingerprint)
    shards = [stacked(epoch_batches(make(rank=r, world_size=2).eval_loader(odd)))[1].tolist() for r in (0, 1)]
    assert len(shards[0]) == 8 and len(shards[1]) == 7
    assert shards[0] == list(odd.labels[0::2]) and shards[1] == list(odd.labels[1::2])


# The compiled path, threads, cleanup


def test_the_compiled_pipeline_gives_the_interpreted_ones_batches(make, manifest):
    """FFCV's way of testing an operation: the same case with the compiler on (numba, parallel
    over two threads) and off (interpreted), training with every augmentation and the ten views."""
    train, val = manifest.split("train"), manifest.split("val")
    compiled = make(compile=True, write_mode="jpg", workers=2, seed=1)
    interpreted = make(compile=False, write_mode="jpg", workers=2, seed=1)
    for build in (lambda p: p.train_loader(train), lambda p: p.eval_loader(val, ten_crop=True)):
        (xc, yc), (xi, yi) = (stacked(epoch_batches(build(p), 1)) for p in (compiled, interpreted))
        assert torch.equal(xc, xi) and torch.equal(yc, yi)
    one_off = compiled.describe()["one_off_seconds"]
    assert one_off["compile"] > interpreted.describe()["one_off_seconds"]["compile"] > 0
    assert compiled.describe()["compiled"] and not interpreted.describe()["compiled"]


def loading_threads() -> list[threading.Thread]:
    from ffcv.loader.epoch_iterator import EpochIterator

    return [t for t in threading.enumerate() if isinstance(t, EpochIterator)]


@pytest.mark.parametrize("last_step", [1, 20], ids=["early", "near-the-end"])
def test_leaving_an_epoch_early_stops_its_loading_thread(make, manifest, last_step):
    """Near the end FFCV's thread has loaded every batch and waits, with no timeout, to put its
    end-of-epoch marker into a full queue; stopping must not hang there (it would warn after 60 s)."""
    loader = make(batch_size=2).train_loader(manifest.split("train"))  # 24 batches, FFCV queues 3: after 21 it has them all
    started = time.monotonic()
    for step, _ in enumerate(loader):
        if step == last_step:
            time.sleep(0.5)  # let FFCV's thread fill its queue
            break
    gc.collect()
    assert not loading_threads() and time.monotonic() - started < 20
    batches = iter(loader)
    next(batches)
    assert loading_threads()
    loader.close()
    loader.close()
    assert not loading_threads()
    assert len(epoch_batches(loader)) == 24


def test_a_dropped_loader_mid_epoch_is_collected_quietly(make, manifest):
    """Numba's dispatcher finalizer can print a KeyError when a Loader's compiled code is
    collected while its thread still runs; stopping the thread first leaves it nothing to do."""
    raised = []
    previous, sys.unraisablehook = sys.unraisablehook, raised.append
    try:
        loader = make(compile=True).eval_loader(manifest.split("val"))
        batches = iter(loader)
        next(batches)
        del loader, batches
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not raised, [str(r.exc_value) for r in raised]
    assert not loading_threads()


def test_settings_are_checked(beton_cache):
    with pytest.raises(ValueError, match="unknown FFCV option.*: quality"):
        FfcvPipeline(AugmentSpec(), PipelineOptions(cache_dir=str(beton_cache), extra={"quality": 90}))
    with pytest.raises(ValueError, match="options.cache_dir"):
        FfcvPipeline(AugmentSpec(), PipelineOptions())


def test_the_runs_ffcv_settings_reach_the_pipeline():
    config = RunConfig(pipeline="ffcv", ffcv_write_mode="jpg", ffcv_compile=False)
    extra = config.pipeline_extra()
    assert set(extra) == {f.name for f in fields(FfcvSettings)}
    assert FfcvSettings.from_extra(extra) == FfcvSettings(write_mode="jpg", compile=False)
    assert FfcvSettings.from_extra(RunConfig(pipeline="ffcv").pipeline_extra()) == FfcvSettings()  # the same defaults
    assert RunConfig(pipeline="torchvision").pipeline_extra() == {}


@pytest.mark.parametrize(
    "setting,message",
    [
        ({"ffcv_write_mode": "png"}, "--ffcv-write-mode 'png' is not one of: auto, raw, jpg"),
        ({"ffcv_jpeg_quality": 101}, "--ffcv-jpeg-quality must be in [1, 100], not 101"),
        ({"ffcv_resize_rule": "crop"}, "--ffcv-resize-rule 'crop' is not one of: paper, max-side"),
        ({"ffcv_max_side": 100}, "--ffcv-max-side must be in [256, 16384], not 100"),
        ({"ffcv_batches_ahead": 0}, "--ffcv-batches-ahead must be at least 1, not 0"),
    ],
)
def test_bad_ffcv_settings_are_user_errors(setting, message):
    with pytest.raises(UserError) as err:
        RunConfig(**setting)
    assert str(err.value) == message


# On a GPU


@needs_gpu
@pytest.mark.gpu
def test_on_a_gpu_batches_match_the_cpus(make, manifest):
    """ToDevice(non_blocking) and the lighting/normalisation on the GPU give the CPU's batches."""
    train, val = manifest.split("train"), manifest.split("val")
    for compile in (False, True):
        gpu, cpu = make(device="cuda", compile=compile, seed=3), make(compile=compile, seed=3)
        for build in (lambda p: p.train_loader(train), lambda p: p.eval_loader(val, ten_crop=True)):
            (xg, yg), (xc, yc) = stacked(epoch_batches(build(gpu), 1)), stacked(epoch_batches(build(cpu), 1))
            assert xg.device.type == yg.device.type == "cuda"
            assert torch.equal(yg.cpu(), yc)
            assert torch.allclose(xg.cpu(), xc, atol=1e-6, rtol=0)


@needs_gpu
@pytest.mark.gpu
def test_on_a_gpu_batches_stay_valid_while_later_ones_load(make, manifest):
    loader = make(device="cuda", batch_size=4).train_loader(manifest.split("train"))
    kept = [(x.clone(), x) for x, _ in epoch_batches(loader)]
    torch.cuda.synchronize()
    assert all(torch.equal(copy, x) for copy, x in kept)


# The command line


@pytest.mark.slow
def test_the_cli_trains_with_ffcv_and_converts_only_once(cli_env, small_root, tmp_path):
    args = [sys.executable, "-m", "bench.run", "--pipeline", "ffcv", "--data", str(small_root), "--out", str(tmp_path),
            "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "8", "--workers", "1", "--no-progress",
            "--no-ffcv-compile", "--no-ten-crop", "--ffcv-write-mode", "jpg", "--ffcv-jpeg-quality", "87", "--cache-dir", str(tmp_path / "cache")]
    records = []
    for _ in range(2):
        before = set((tmp_path / "records").glob("*.json"))
        out = subprocess.run(args, cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        [new] = set((tmp_path / "records").glob("*.json")) - before
        records.append(json.loads(new.read_text()))
    first, second = records
    assert first["status"] == second["status"] == "complete"
    assert first["pipeline"]["converted"] == ["train", "val"] and first["pipeline"]["one_off_seconds"]["conversion"] > 0
    assert second["pipeline"]["converted"] == [] and second["pipeline"]["one_off_seconds"]["conversion"] == 0
    assert second["pipeline"]["betons"] == first["pipeline"]["betons"]
    assert set(first["metrics"]) == {"top1_err_centre", "top5_err_centre", "val_samples"}
    assert first["metrics"]["val_samples"] == 16
    assert first["config"]["ffcv_jpeg_quality"] == 87 and first["pipeline"]["storage"]["jpeg_quality"] == 87


@pytest.mark.parametrize("views", [(), (10,)], ids=["crop", "ten-views"])
def test_the_gpu_normalisation_computes_the_cpu_kernels_values(views):
    """The GPU variant of LightingNormalize is torch code; run on CPU tensors it must give the
    CPU kernel's output bit for bit (layout, lighting per sample, normalisation)."""
    from ffcv.pipeline.state import State

    from pipelines.ffcv_ops.lighting import LightingNormalize

    spec = AugmentSpec()
    draws = EpochDraws(seed=1)
    draws.epoch = 3
    op = LightingNormalize(spec.colour.mean, spec.colour.std, lighting_matrix=spec.lighting_matrix(), sigma=0.1 if not views else 0.0, draws=draws)
    images = np.random.default_rng(0).integers(0, 256, size=(4, *views, 227, 227, 3), dtype=np.uint8)
    indices = np.array([7, 0, 31, 2], dtype=np.uint64)
    op.declare_state_and_memory(State(jit_mode=True, device=torch.device("cpu"), shape=images.shape[1:], dtype=np.dtype("u1")))
    on_cpu = op.generate_code()(images, None, indices)
    torch_code = op._generate_gpu()(torch.from_numpy(images), None, indices)
    assert on_cpu.shape == (4, *views, 3, 227, 227) and tuple(torch_code.shape) == on_cpu.shape
    assert torch.equal(torch_code, torch.from_numpy(on_cpu))


def test_a_new_epoch_ends_the_one_left_unfinished(make, manifest):
    loader = make(batch_size=4).train_loader(manifest.split("train"))
    old = iter(loader)
    first = next(old)
    loader.set_epoch(1)
    new = list(loader)
    assert len(new) == 12 and not torch.equal(new[0][0], first[0])
    assert list(old) == [] and not loading_threads()
