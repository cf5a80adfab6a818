"""The DALI pipeline against the contract, the spec and the torchvision pipeline; the real DALI
on the CPU (``device_id=None``), GPU-only checks skipped where torch sees no GPU."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref

import numpy as np
import psutil
import pytest
import torch
from PIL import Image

from bench.config import RunConfig
from bench.data.manifest import load_manifest
from bench.errors import UserError
from pipelines import AugmentSpec, ColourStats, PipelineOptions, Split, create_pipeline, list_pipelines
from pipelines.registry import entry
from pipelines.torchvision_pipeline import SeededSampler
from tests.conftest import REPO

try:
    from pipelines import dali_pipeline
except ImportError:  # the library is optional; the tests that need it say so
    dali_pipeline = None

needs_dali = pytest.mark.skipif(dali_pipeline is None, reason="nvidia-dali is not installed: pip install -e '.[dali]'")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (DALI's mixed decoder)")
INSTALL = "pip install -e '.[dali]'"
IDENTITY = ColourStats(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # outputs are pixel / 255


def make(spec=None, name="dali", **options):
    return create_pipeline(name, spec or AugmentSpec(), PipelineOptions(**{"batch_size": 8, "workers": 2, **options}))


def one_file_split(path, copies: int) -> Split:
    """``copies`` uses of one file, as a split (DALI reads the same file again for each)."""
    return Split("test", (str(path),) * copies, (0,) * copies, num_classes=1, fingerprint="test")


def to_levels(x: torch.Tensor) -> np.ndarray:
    """Outputs of an IDENTITY-normalised pipeline back to 0-255 pixel levels."""
    return (x * 255).round().to(torch.int64).numpy()


def epoch(loader, e: int = 0):
    """One pass of ``loader`` at epoch ``e``: images, labels, split indices (concatenated)."""
    loader.set_epoch(e)
    parts = list(loader.iter_indexed())
    return tuple(torch.cat([p[k] for p in parts]) for k in range(3))


@pytest.fixture(scope="module")
def coordinate_png(tmp_path_factory):
    """256 x 256 PNG with red = column, green = row: a crop's first pixel gives its offset exactly."""
    x = np.arange(256, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (256, 1)), np.tile(x[:, None], (1, 256)), np.full((256, 256), 128, np.uint8)], axis=-1)
    path = tmp_path_factory.mktemp("png") / "coords.png"
    Image.fromarray(rgb).save(path)
    return path


# --- registry and the command line -----------------------------------------------------------


def test_registered_with_its_install_command():
    assert "dali" in list_pipelines()
    assert entry("dali").install == INSTALL


BLOCK_DALI = """
import importlib.abc, runpy, sys
class NoDali(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nvidia.dali" or name.startswith("nvidia.dali."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoDali())
runpy.run_module("bench.run", run_name="__main__", alter_sys=True)
"""


def test_without_dali_the_cli_prints_the_install_command_and_exits_2(cli_env, small_root, tmp_path):
    """The real CLI in a fresh interpreter where ``import nvidia.dali`` fails, as on a machine without it."""
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_DALI, "--pipeline", "dali", "--data", str(small_root), "--out", str(tmp_path)],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "No module named 'nvidia.dali'" in out.stderr and f"install it with: {INSTALL}" in out.stderr
    assert not (tmp_path / "records").exists()


def test_dali_settings_are_validated_and_reach_the_pipeline():
    config = RunConfig(pipeline="dali", dali_decoder="cpu", dali_prefetch_depth=3)
    assert config.pipeline_extra() == {"decoder": "cpu", "hw_decoder_load": 0.65, "prefetch_depth": 3, "feed_workers": 1}
    for bad, message in [
        (dict(dali_decoder="gpu"), "--dali-decoder 'gpu' is not one of: auto, mixed, cpu"),
        (dict(dali_hw_decoder_load=1.5), "--dali-hw-decoder-load must be in [0, 1]"),
        (dict(dali_prefetch_depth=0), "--dali-prefetch-depth must be at least 1"),
        (dict(dali_feed_workers=0), "--dali-feed-workers must be at least 1"),
    ]:
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
            RunConfig(pipeline="dali", **bad)


@needs_dali
def test_mixed_decoder_without_a_gpu_is_a_one_line_error(cli_env, small_root, tmp_path):
    if dali_pipeline.GetCUDADeviceCount() > 0:
        pytest.skip("DALI sees a GPU here")
    with pytest.raises(UserError, match="DALI sees no CUDA GPU"):
        dali_pipeline.choose_decoder("mixed", torch.device("cpu"))
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", "--pipeline", "dali", "--dali-decoder", "mixed", "--data", str(small_root), "--out", str(tmp_path), "--batch-size", "8", "--no-progress"],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().endswith("--dali-decoder mixed: DALI sees no CUDA GPU on this machine (use auto or cpu)")
    assert not (tmp_path / "records").exists()


@needs_dali
def test_decoder_follows_the_device():
    assert dali_pipeline.choose_decoder("auto", torch.device("cpu")) == "cpu"
    assert dali_pipeline.choose_decoder("cpu", torch.device("cpu")) == "cpu"
    expected = "mixed" if dali_pipeline.GetCUDADeviceCount() > 0 else "cpu"
    assert dali_pipeline.choose_decoder("auto", torch.device("cuda")) == expected


# --- the contract ----------------------------------------------------------------------------


@needs_dali
def test_train_batches_have_the_contract_shape_and_labels(manifest):
    split = manifest.split("train")
    loader = make().train_loader(split)
    images, labels, indices = epoch(loader)
    assert len(loader) == 48 // 8 and loader.num_samples == 48 and images.shape == (48, 3, 227, 227)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64 and labels.shape == (48,)
    assert labels.tolist() == [split.labels[i] for i in indices.tolist()]
    first, _ = next(iter(loader))
    assert first.shape == (8, 3, 227, 227)


@needs_dali
def test_evaluation_follows_the_manifest(manifest):
    split = manifest.split("val")
    loader = make(batch_size=6).eval_loader(split)  # 16 = 6 + 6 + 4: the last batch partial
    _, labels, indices = epoch(loader)
    assert len(loader) == 3 and loader.num_samples == 16
    assert indices.tolist() == list(range(16)) and labels.tolist() == list(split.labels)
    _, labels_again, _ = epoch(loader)  # the graph is reused for the next pass
    assert labels_again.tolist() == list(split.labels)


@needs_dali
@pytest.mark.parametrize("crop", [227, 224])
def test_crop_sizes_and_ten_views(manifest, crop):
    p = make(AugmentSpec(crop=crop))
    x, _ = next(iter(p.train_loader(manifest.split("train"))))
    assert x.shape == (8, 3, crop, crop)
    x, y = next(iter(p.eval_loader(manifest.split("val"), ten_crop=True)))
    assert x.shape == (8, 10, 3, crop, crop) and y.shape == (8,)


@needs_dali
def test_describe_says_which_decoder_ran_and_what_building_cost(manifest):
    p = make()
    before = p.describe()
    assert before["name"] == "dali" and before["decoder"] == "cpu" and before["device_id"] is None
    assert before["one_off_seconds"] == {"pipeline_build": 0.0} and before["threads"] == 2
    next(iter(p.eval_loader(manifest.split("val"))))
    after = p.describe()
    assert after["pipeline_builds"] == 1 and after["one_off_seconds"]["pipeline_build"] > 0
    json.dumps(after)  # goes into the run record as is


# --- equivalence with the torchvision pipeline -----------------------------------------------


@needs_dali
@pytest.mark.parametrize("ten_crop", [False, True], ids=["centre", "ten-views"])
def test_matches_torchvision_with_augmentation_off(manifest, ten_crop):
    """Same files, same spec, evaluation crops: per-pixel differences in 0-255 levels.

    Measured on this data (64 files, crop 227; the same on 3,100 embedded images): centre
    crop max 1.0, mean 0.165; ten views max 10.0, mean 0.165. libjpeg-turbo decodes
    identically in both; the antialiased bilinear resamplers round differently (at most one
    level), and on the image's own edge PIL renormalises its filter where DALI repeats the
    edge pixel: the corner views carry those rows and columns.
    """
    val, train = manifest.split("val"), manifest.split("train")
    split = Split("both", val.paths + train.paths, val.labels + train.labels, val.num_classes, val.fingerprint)
    spec = AugmentSpec()
    levels = torch.tensor(spec.colour.std).view(3, 1, 1) * 255
    diffs = []
    for (xd, yd), (xt, yt) in zip(make(spec, batch_size=16).eval_loader(split, ten_crop=ten_crop), make(spec, "torchvision", batch_size=16, workers=0).eval_loader(split, ten_crop=ten_crop)):
        assert torch.equal(yd, yt)
        diffs.append(((xd - xt) * levels).abs().flatten())
    d = torch.cat(diffs)
    assert d.numel() == 64 * 3 * 227 * 227 * (10 if ten_crop else 1)
    assert d.mean() < 0.2
    assert d.max() < (11.0 if ten_crop else 1.5)
    assert (d > 1.5).float().mean() < 1e-4


@needs_dali
def test_exif_orientation_is_applied_as_torchvision_does(tmp_path):
    """A portrait photo stored sideways (EXIF orientation 6) comes out upright, as PIL's ``exif_transpose`` gives it."""
    rng = np.random.default_rng(0)
    stored = np.zeros((300, 400, 3), np.uint8)
    stored[:, :200] = (220, 30, 30)
    stored[:100, 200:] = (30, 30, 220)
    stored = np.clip(stored.astype(int) + rng.integers(-10, 10, stored.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    split = one_file_split(tmp_path / "r.jpg", 1)
    spec = AugmentSpec(colour=IDENTITY)
    (xd, _), (xt, _) = next(iter(make(spec).eval_loader(split))), next(iter(make(spec, "torchvision", workers=0).eval_loader(split)))
    assert (xd - xt).abs().max() * 255 < 1.5
    Image.fromarray(stored).save(tmp_path / "plain.jpg", quality=95)  # the same pixels without the tag look different
    xp, _ = next(iter(make(spec).eval_loader(one_file_split(tmp_path / "plain.jpg", 1))))
    assert (xd - xp).abs().mean() * 255 > 20


@needs_dali
def test_training_crops_of_an_exif_rotated_file_are_those_of_the_upright_file(tmp_path):
    """The feed sizes each crop's region from the header, turned by the EXIF orientation as DALI
    decodes: a file stored sideways with orientation 6 gives the training crops of the same
    photo stored upright (JPEG re-encoding aside: within a few levels, not a misplaced window)."""
    rng = np.random.default_rng(1)
    upright = np.clip(rng.normal(128, 40, (400, 300, 3)), 0, 255).astype(np.uint8)
    upright[:200, :150] = (220, 30, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees counter-clockwise: displayed after a clockwise turn
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(tmp_path / "sideways.jpg", exif=exif, quality=98)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=98)
    spec = AugmentSpec(colour=IDENTITY, lighting_sigma=0.0)
    sideways, _ = next(iter(make(spec, batch_size=1, seed=3).train_loader(one_file_split(tmp_path / "sideways.jpg", 1))))
    straight, _ = next(iter(make(spec, batch_size=1, seed=3).train_loader(one_file_split(tmp_path / "upright.jpg", 1))))
    assert sideways.shape == straight.shape == (1, 3, 227, 227)
    assert ((sideways - straight).abs() * 255).mean() < 3


# --- the paper's augmentation ----------------------------------------------------------------


@needs_dali
def test_random_crops_are_uniform_integer_offsets_and_flips_half(coordinate_png):
    spec = AugmentSpec(lighting_sigma=0.0, colour=IDENTITY)
    loader = make(spec, batch_size=100).train_loader(one_file_split(coordinate_png, 200))
    offsets, flips = [], []
    for e in range(3):
        images, _, _ = epoch(loader, e)
        for x in to_levels(images):
            red, green = x[0], x[1]
            top, left = green[0, 0], min(red[0, 0], red[0, -1])
            flipped = red[0, 0] > red[0, -1]
            cols = np.arange(left, left + 227)
            assert np.array_equal(green, np.tile(np.arange(top, top + 227)[:, None], (1, 227)))  # whole rows, no interpolation
            assert np.array_equal(red, np.tile(cols[::-1] if flipped else cols, (227, 1)))
            offsets.append((top, left))
            flips.append(flipped)
    offsets = np.array(offsets)
    assert offsets.min() == 0 and offsets.max() == 29
    for axis in (0, 1):  # 600 draws over 30 offsets: every offset, none more than twice as often as expected
        counts = np.bincount(offsets[:, axis], minlength=30)
        assert counts.min() > 0 and counts.max() < 40
    assert np.mean(offsets[:, 0] == offsets[:, 1]) < 0.1  # top and left are drawn separately
    assert 0.43 < np.mean(flips) < 0.57


@needs_dali
def test_evaluation_crops_are_the_spec_offsets(coordinate_png):
    spec = AugmentSpec(colour=IDENTITY)
    p = make(spec)
    split = one_file_split(coordinate_png, 2)
    centre, _ = next(iter(p.eval_loader(split)))
    views, _ = next(iter(p.eval_loader(split, ten_crop=True)))
    c = to_levels(centre[0])
    assert (c[1, 0, 0], c[0, 0, 0]) == (14, 14)
    for view, (top, left, flip) in zip(to_levels(views[0]), spec.ten_crop_offsets()):
        red = view[0, 0]
        assert view[1, 0, 0] == top and red.min() == left and (red[0] > red[-1]) == flip


@needs_dali
def test_lighting_shift_matches_sigma_and_eigen_statistics(tmp_path):
    """The per-image shift is constant over pixels and distributed as N(0, sigma^2 M M^T), M = eigvec diag(eigval).

    Crop equal to the image and no flip, so the lit and the plain outputs differ by the shift alone.
    """
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    split = one_file_split(tmp_path / "noise.png", 1000)
    colour = ColourStats()
    spec = AugmentSpec(resize=32, crop=32, flip_prob=0.0, lighting_sigma=0.1, colour=colour)
    lit = make(spec, batch_size=250).train_loader(split)
    plain, _, _ = epoch(make(spec.without_augmentation(), batch_size=250).train_loader(split))
    std = torch.tensor(colour.std).view(3, 1, 1)
    shifts = []
    for e in range(3):
        images, _, _ = epoch(lit, e)
        d = (images - plain) * std  # back to the [0, 1] pixel scale
        assert torch.allclose(d, d[:, :, :1, :1].expand_as(d), atol=1e-5)  # one shift for every pixel
        shifts.append(d[:, :, 0, 0].double().numpy())
    assert not np.allclose(shifts[0], shifts[1])  # drawn anew each time an image is used
    shifts = np.concatenate(shifts)
    m = spec.lighting_matrix()
    expected_cov = 0.1**2 * m @ m.T
    assert np.allclose(shifts.mean(axis=0), 0.0, atol=4 * np.sqrt(np.diag(expected_cov) / len(shifts)).max())
    assert np.allclose(np.cov(shifts.T), expected_cov, rtol=0.1, atol=1e-5)
    proj = shifts @ np.asarray(colour.eigvec)  # along each eigenvector the shift's std is sigma * lambda_i
    assert np.allclose(proj.std(axis=0), 0.1 * np.asarray(colour.eigval), rtol=0.06)


# --- seeding, order, sharding ----------------------------------------------------------------


@needs_dali
# DALI 2.4's spawn start leaves its socket pair to each worker to the garbage collector
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_same_seed_same_batches_whatever_the_threads(manifest):
    split = manifest.split("train")

    def first_two(seed, workers, **extra):
        p = make(seed=seed, workers=workers, extra=extra)
        loader = p.train_loader(split)
        it = loader.iter_indexed()
        out = [next(it), next(it)]
        loader.close()
        return out, p.describe()["feed_started_by"]

    (a, fork), (b, _), (c, _), (d, _) = first_two(5, 1), first_two(5, 2, prefetch_depth=3), first_two(6, 2), first_two(5, 2)
    # The feed's worker processes, two of them started as on a machine where CUDA is initialised
    e, spawn = first_two(5, 2, feed_workers=2, feed_start="spawn")
    assert (fork, spawn) == ("fork", "spawn")
    for (xa, ya, ia), *others in zip(a, b, d, e):
        for x, y, i in others:
            assert torch.equal(xa, x) and torch.equal(ia, i) and torch.equal(ya, y)
    assert not torch.equal(a[0][2], c[0][2]) and not torch.equal(a[0][0], c[0][0])


@needs_dali
def test_graphs_left_as_garbage_are_collected_before_feed_workers_are_forked(manifest):
    """A forked feed worker that collected an inherited DALI graph would wait forever in its ``__del__``
    (the suite's smoke run hung on the stock baseline's graph): such garbage is collected before the fork."""
    from nvidia.dali.pipeline import Pipeline

    from pipelines.stock import dali_stock

    split = manifest.split("train")
    gc.disable()  # nothing is collected behind the test's back (nor in the worker, which inherits this)
    try:
        stock = dali_stock.build(split, crop=224, batch_size=8, workers=1, seed=0, device=torch.device("cpu"), cache_dir="")
        next(iter(stock.batches))
        graphs = [weakref.ref(o) for o in gc.get_objects() if issubclass(type(o), Pipeline)]
        del stock
        assert graphs and all(g() is not None for g in graphs)  # the stock loader's graph: garbage, in a cycle
        p = make(seed=0)
        next(iter(p.train_loader(split)))
        assert p.describe()["feed_started_by"] == "fork" and all(g() is None for g in graphs)
    finally:
        gc.enable()


FORKS_FEED_WORKERS = """
import json, sys, time
from pipelines import AugmentSpec, PipelineOptions, Split
from pipelines.dali_feed import EpochFeed, forking_workers
from pipelines.dali_graph import train_graph

paths, armed = json.loads(sys.argv[1]), sys.argv[2] == "armed"
split = Split("train", tuple(paths), (0,) * len(paths), 1, "x")
spec = AugmentSpec()
feed = EpochFeed(split, spec, PipelineOptions(batch_size=4), drop_last=False, first_epoch=0)
pipe = train_graph(feed, spec=spec, decoder="cpu", hw_decoder_load=0.0, uint8=False, feed_depth=1, batch_size=4, num_threads=1,
                   device_id=None, seed=0, py_num_workers=1, py_start_method="fork")
with forking_workers(armed):
    pipe.build()  # the workers are forked; the graph never runs, so the feed is never called
print("built", flush=True)
time.sleep(120)
"""


@needs_dali
@pytest.mark.parametrize("armed", [True, False], ids=["forking_workers", "control"])
def test_a_feed_worker_dies_with_a_run_killed_before_the_feed_was_first_called(manifest, armed):
    """The window between the fork and the feed's first call: a run killed there leaves no worker
    (the control, forked outside ``forking_workers``, outlives its parent; it is killed here)."""
    paths = json.dumps(list(manifest.split("train").paths[:8]))
    with subprocess.Popen([sys.executable, "-c", FORKS_FEED_WORKERS, paths, "armed" if armed else "plain"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as run:
        assert run.stdout.readline().strip() == "built"
        workers = [p for p in psutil.Process(run.pid).children() if "resource_tracker" not in " ".join(p.cmdline())]
        assert workers
        run.kill()
    _, alive = psutil.wait_procs(workers, timeout=3)
    for p in alive:
        p.kill()
    assert bool(alive) != armed


@needs_dali
def test_epoch_order_is_the_torchvision_order_and_changes_each_epoch(manifest):
    split = manifest.split("train")
    loader = make(seed=3, batch_size=16).train_loader(split)
    sampler = SeededSampler(len(split), seed=3, shuffle=True)
    orders = []
    for e in range(2):
        _, _, indices = epoch(loader, e)
        sampler.set_epoch(e)
        assert indices.tolist() == [i for i, _ in sampler]
        orders.append(indices.tolist())
    assert sorted(orders[0]) == list(range(48)) and orders[0] != orders[1]


@needs_dali
def test_set_epoch_reproduces_an_epoch_after_a_resume(manifest):
    split = manifest.split("train")
    straight = make(seed=1).train_loader(split)
    epoch(straight, 0)
    expected = epoch(straight, 1)
    resumed = epoch(make(seed=1).train_loader(split), 1)
    for a, b in zip(expected, resumed):
        assert torch.equal(a, b)


@needs_dali
def test_training_graph_is_built_once_not_every_epoch(manifest):
    """Issue 13 defect 7: epochs are fed through external_source. Only a pass left early, or a pass of
    another epoch than the next (DALI's workers count epochs from the build), costs a rebuild."""
    p = make(seed=1)
    loader = p.train_loader(manifest.split("train"))
    first = [epoch(loader, e) for e in range(3)]
    assert p.describe()["pipeline_builds"] == 1
    assert not torch.equal(first[0][2], first[1][2])  # each epoch its own order
    loader.set_epoch(3)
    next(iter(loader))  # left after one batch
    assert p.describe()["pipeline_builds"] == 1
    third = epoch(loader, 3)
    assert p.describe()["pipeline_builds"] == 2
    back = [epoch(loader, e) for e in (0, 1)]  # an earlier epoch: rebuilt once, then reset
    assert p.describe()["pipeline_builds"] == 3
    for a, b in zip(back, first):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(third[2], first[0][2])


@needs_dali
def test_training_draws_are_the_torchvision_pipelines(manifest):
    """Same seed: the same samples with the same crops, flips and lighting as the torchvision pipeline.

    The pixels differ as the two pipelines' resamplers do: DALI resamples the 256 square
    (the evaluation bound: at most 1 level inside the image, up to 10 on the image's own edge),
    torchvision the crop's window (at most 1 level from its own square): so at most 11 levels,
    the mean within the evaluation bound's 0.2."""
    split = manifest.split("train")
    spec = AugmentSpec()
    xd, yd, idx = epoch(make(spec, seed=7, batch_size=16).train_loader(split))
    tv = make(spec, "torchvision", seed=7, batch_size=16, workers=0).train_loader(split)
    tv.set_epoch(0)
    xt, yt = (torch.cat(parts) for parts in zip(*tv))
    assert torch.equal(yd, yt)
    d = ((xd - xt) * torch.tensor(spec.colour.std).view(3, 1, 1) * 255).abs()
    assert d.mean() < 0.2 and d.max() < 12


@needs_dali
@pytest.mark.parametrize("ten_crop", [False, True], ids=["train", "ten-views"])
def test_uint8_output_normalised_by_torch_matches_dalis_normalisation(manifest, ten_crop):
    """Issue 13 defect 9: the CPU decoder feeding a GPU hands torch uint8 (pinned on CUDA) and torch normalises;
    forced here on the CPU, the result is DALI's own float output up to float rounding."""
    split = manifest.split("val" if ten_crop else "train")
    plain, small = make(seed=3), make(seed=3, extra={"uint8_output": True})
    assert small.uint8_output and not plain.uint8_output
    if ten_crop:
        (a, ya), (b, yb) = next(iter(plain.eval_loader(split, ten_crop=True))), next(iter(small.eval_loader(split, ten_crop=True)))
    else:
        (a, ya, _), (b, yb, _) = epoch(plain.train_loader(split)), epoch(small.train_loader(split))
    assert torch.equal(ya, yb) and a.shape == b.shape and b.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-4)


@needs_dali
def test_two_shards_see_every_sample_once_per_epoch(manifest):
    """47 training samples on 2 ranks: 46 used (as the torchvision sampler), 23 each, disjoint, in that sampler's order."""
    full = manifest.split("train")
    split = Split("train", full.paths[:47], full.labels[:47], full.num_classes, full.fingerprint)
    for e in range(2):
        shards = []
        for rank in range(2):
            loader = make(seed=2, batch_size=5, rank=rank, world_size=2, drop_last=False).train_loader(split)
            images, labels, indices = epoch(loader, e)
            assert len(loader) == 5 and loader.num_samples == 23 == len(indices)
            assert labels.tolist() == [split.labels[i] for i in indices.tolist()]
            sampler = SeededSampler(47, seed=2, shuffle=True, rank=rank, world_size=2)
            sampler.set_epoch(e)
            assert indices.tolist() == [i for i, _ in sampler]
            shards.append(indices.tolist())
        assert not set(shards[0]) & set(shards[1]) and len(set(shards[0]) | set(shards[1])) == 46
    evaluated = []
    for rank in range(2):
        loader = make(batch_size=5, rank=rank, world_size=2).eval_loader(split)
        _, labels, indices = epoch(loader)
        assert loader.num_samples == len(indices) and labels.tolist() == [split.labels[i] for i in indices.tolist()]
        evaluated += indices.tolist()
    assert evaluated == list(range(47))  # every sample exactly once across ranks, padding dropped


@needs_dali
def test_drop_last_gives_whole_batches(manifest):
    loader = make(batch_size=10, drop_last=True).train_loader(manifest.split("train"))
    images, _, indices = epoch(loader)
    assert len(loader) == 4 and loader.num_samples == 40 == len(indices) and len(set(indices.tolist())) == 40


@needs_dali
def test_a_corrupt_file_left_out_by_the_manifest_never_reaches_dali(small_copy, tmp_path):
    victim = sorted((small_copy / "train" / "class_001").iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # a truncated download
    manifest = load_manifest(small_copy, tmp_path / "cache", progress=False)
    [bad] = manifest.bad()
    assert bad.path == f"train/class_001/{victim.name}"
    split = manifest.split("train")
    assert str(victim) not in split.paths and len(split) == 47
    loader = make(batch_size=8, drop_last=False).train_loader(split)
    _, labels, indices = epoch(loader)
    assert sorted(indices.tolist()) == list(range(47)) and labels.tolist() == [split.labels[i] for i in indices.tolist()]
    # The control: given to DALI, the file stops the pipeline.
    with pytest.raises(RuntimeError, match=f"Failed to decode sample .*{victim.name}"):
        epoch(make(batch_size=8, drop_last=False).train_loader(Split("bad", split.paths[:3] + (str(victim),), (0, 0, 0, 1), 4, "x")))


# --- the command line, for real ----------------------------------------------------------------


@needs_dali
@pytest.mark.slow
def test_a_real_dali_run_records_its_decoder(cli_env, small_root, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", "--pipeline", "dali", "--data", str(small_root), "--out", str(tmp_path), "--epochs", "1",
         "--steps-per-epoch", "2", "--batch-size", "8", "--workers", "2", "--no-progress"],
        cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    [path] = (tmp_path / "records").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "complete" and record["config"]["pipeline"] == "dali"
    expected = "mixed" if torch.cuda.is_available() else "cpu"
    assert record["pipeline"]["decoder"] == expected and record["pipeline"]["one_off_seconds"]["pipeline_build"] > 0
    assert record["metrics"]["val_samples"] == 16 and "top1_err_10crop" in record["metrics"]


# --- on a GPU ----------------------------------------------------------------------------------


@needs_dali
@needs_gpu
@pytest.mark.gpu
def test_mixed_decoder_hands_gpu_batches_to_torch(manifest):
    p = make(device="cuda", extra={"decoder": "auto", "hw_decoder_load": 0.5})
    assert p.describe()["decoder"] == "mixed" and p.describe()["hw_decoder_load"] == 0.5
    images, labels, indices = next(p.train_loader(manifest.split("train")).iter_indexed())
    assert images.is_cuda and labels.is_cuda and indices.is_cuda
    assert images.shape == (8, 3, 227, 227) and images.dtype == torch.float32 and labels.dtype == torch.int64
    x, _ = next(iter(p.eval_loader(manifest.split("val"), ten_crop=True)))
    assert x.is_cuda and x.shape == (8, 10, 3, 227, 227)


@needs_dali
@needs_gpu
@pytest.mark.gpu
def test_mixed_and_cpu_graphs_draw_the_same_augmentation(manifest):
    """Same seed: the same samples and, within the decoders' differences, the same pixels (nvJPEG and
    the GPU resampler are not bit-exact with the CPU ones; the bound is loose until measured on a GPU)."""
    split = manifest.split("train")
    gpu = epoch(make(device="cuda", seed=4, extra={"decoder": "mixed"}).train_loader(split))
    cpu = epoch(make(device="cuda", seed=4, extra={"decoder": "cpu"}).train_loader(split))
    assert torch.equal(gpu[2], cpu[2]) and torch.equal(gpu[1], cpu[1])
    levels = torch.tensor(AugmentSpec().colour.std, device="cuda").view(1, 3, 1, 1) * 255
    d = ((gpu[0] - cpu[0]) * levels).abs()
    assert d.mean() < 2.0 and d.max() < 64
