"""The throughput harness on tiny settings: real loaders, real training steps, a real decode pool.
Nothing here asserts on how fast anything was; the numbers are checked for form and arithmetic."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from bench.config import RunConfig
from bench.harness import throughput
from bench.harness.ceiling import CPU_DECODERS, ceiling_files
from bench.harness.throughput import shares_of_ceiling, stall_fraction
from bench.harness.timing import summarise
from pipelines import registry

TINY = dict(
    harness="throughput", batch_size=4, workers=1, warmup_batches=1, batches_per_repeat=1,
    loader_batches_per_repeat=2, repeats=3, ceiling_images=8, progress=False, preset="embedded-cpu",
)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_config(root, cache_dir, out, **overrides) -> RunConfig:
    return RunConfig.with_preset({**TINY, "data": str(root), "cache_dir": str(cache_dir), "out": str(out), **overrides})


def check_stats(stats: dict, count: int) -> None:
    assert stats["unit"] == "images/s" and len(stats["values"]) == count
    assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
    assert stats["min"] > 0 and stats["iqr"] == pytest.approx(stats["q3"] - stats["q1"])


def test_summary_statistics():
    s = summarise([4.0, 1.0, 3.0, 2.0], "images/s")
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"]) == (2.5, 1.0, 4.0, 1.75, 3.25)
    assert s["values"] == [4.0, 1.0, 3.0, 2.0]


def test_stall_fraction_and_shares_as_defined():
    assert stall_fraction(end_to_end=75.0, model_only=100.0) == pytest.approx(0.25)
    assert stall_fraction(end_to_end=101.0, model_only=100.0) == pytest.approx(-0.01)  # noise is kept, not clipped
    shares = shares_of_ceiling(50.0, {"cpu": {"images_per_s": {"median": 200.0}}, "nvjpeg": {"skipped": "no GPU"}})
    assert shares == {"cpu": 0.25, "nvjpeg": None}


def test_ceiling_files_are_an_even_sample():
    paths = [f"f{i}" for i in range(10)]
    assert ceiling_files(paths, 3) == ["f0", "f3", "f6"]
    assert ceiling_files(paths, 50) == paths


@pytest.mark.slow
def test_one_point_writes_a_complete_record(small_root, cache_dir, tmp_path):
    config = tiny_config(small_root, cache_dir, tmp_path)
    record = json.loads(throughput.run(config).read_text())
    assert record["schema_version"] == 1 and record["harness"] == "throughput"
    assert record["status"] == "complete" and record["error"] is None and record["sweep"] is None
    assert record["protocol"] == {"warmup_batches": 1, "batches_per_repeat": 1, "loader_batches_per_repeat": 2, "repeats": 3,
                                  "ceiling_images": 8, "timer": "time.perf_counter", "cuda_synchronised": False,
                                  "epoch_batches": 12}
    assert (record["batch_size"], record["workers"], record["mode"]["name"]) == (4, 1, "single")
    m = record["metrics"]
    for phase, batches in (("loader_only", 2), ("end_to_end", 1), ("model_only", 1)):
        check_stats(m[phase]["images_per_s"], 3)
        assert [r["images"] for r in m[phase]["repeats"]] == [4 * batches] * 3
        rates = [r["images"] / r["seconds"] for r in m[phase]["repeats"]]
        assert m[phase]["images_per_s"]["values"] == pytest.approx(rates)
        res = m[phase]["resources"]
        assert res["cpu_seconds"] >= 0 and res["peak_rss_bytes"] > 0 and res["cores_available"] >= 1
        assert res["cuda_max_allocated_bytes"] is None
    assert m["loader_only"]["resources"]["processes"] >= 2  # the loader's worker process is counted
    # The derived figures, recomputed from the recorded medians.
    med = {k: m[k]["images_per_s"]["median"] for k in ("loader_only", "end_to_end", "model_only")}
    assert m["stall_fraction"] == pytest.approx(1 - med["end_to_end"] / med["model_only"])
    cpu = m["decode_ceiling"]["cpu"]
    assert m["loader_share_of_ceiling"]["cpu"] == pytest.approx(med["loader_only"] / cpu["images_per_s"]["median"])
    assert m["loader_share_of_ceiling"]["nvjpeg"] is None and "skipped" in m["decode_ceiling"]["nvjpeg"]
    assert m["bound_by"] == ("loader" if med["loader_only"] < med["model_only"] else "model")
    # The ceiling decoded exactly the sampled files, fully, with every decoder, on every core.
    files = ceiling_files(sorted(p for p in (small_root / "train").rglob("*.jpg")), 8)
    assert [small_root / p for p in m["decode_ceiling"]["paths"]] == files
    pixels = []
    for f in files:
        with Image.open(f) as img:
            pixels.append(img.width * img.height)
    assert m["decode_ceiling"]["files"] == 8 and cpu["processes"] >= 1
    assert set(cpu["decoders"]) == set(CPU_DECODERS)
    for decoder in cpu["decoders"].values():
        check_stats(decoder["images_per_s"], 3)
        assert decoder["megapixels_per_image"] == pytest.approx(sum(pixels) / len(pixels) / 1e6)
    assert cpu["images_per_s"] == cpu["decoders"][cpu["best_decoder"]]["images_per_s"]
    assert cpu["best_decoder"] == max(CPU_DECODERS, key=lambda d: cpu["decoders"][d]["images_per_s"]["median"])
    # One-off costs apart from the rates; provenance says which hardware.
    assert set(record["one_off_seconds"]) == {"harness", "pipeline"}
    assert record["one_off_seconds"]["harness"]["first_batch_s"] > 0
    assert record["provenance"]["hardware"]["key"] and record["model"]["parameters"] > 0
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.slow
def test_a_sweep_records_failing_points_and_goes_on(small_root, cache_dir, tmp_path, monkeypatch):
    # A registered pipeline whose library is not installed: a real import failure, recorded as a failed point.
    monkeypatch.setitem(registry._ENTRIES, "absent", registry.PipelineEntry("absent", "pipelines.absent_backend", "Absent", "pip install absent", "not installed"))
    config = tiny_config(small_root, cache_dir, tmp_path, sweep_pipelines="absent,torchvision", sweep_batch_sizes="4,64",
                         batches_per_repeat=1, warmup_batches=1)
    paths = throughput.run(config)
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "records").glob("*.json"))]
    assert len(records) == 4 and len(paths) == 1
    by_point = {(r["config"]["pipeline"], r["batch_size"]): r for r in records}
    assert {r["sweep"]["id"] for r in records} == {records[0]["sweep"]["id"]}
    assert sorted(r["sweep"]["index"] for r in records) == [0, 1, 2, 3]
    assert all(r["sweep"]["points"] == 4 for r in records)
    assert by_point[("torchvision", 4)]["status"] == "complete"
    for point in (("absent", 4), ("absent", 64)):
        assert by_point[point]["status"] == "failed"
        assert "PipelineUnavailable" in by_point[point]["error"] and "pip install absent" in by_point[point]["error"]
    too_big = by_point[("torchvision", 64)]
    assert too_big["status"] == "failed" and "the training split has only 48 images" in too_big["error"]
    assert all(r["config"]["sweep_batch_sizes"] == "" for r in records)  # each record is one point, re-runnable alone


@pytest.mark.gpu
@needs_cuda
def test_one_point_on_a_gpu_synchronises_and_measures_nvjpeg(small_root, cache_dir, tmp_path):
    record = json.loads(throughput.run(tiny_config(small_root, cache_dir, tmp_path, device="cuda")).read_text())
    assert record["status"] == "complete" and record["protocol"]["cuda_synchronised"] is True
    m = record["metrics"]
    nvjpeg = m["decode_ceiling"]["nvjpeg"]
    check_stats(nvjpeg["images_per_s"], 3)
    assert nvjpeg["images"] == 8 and nvjpeg["includes_file_read"] is False and nvjpeg["device"].startswith("cuda")
    assert m["loader_share_of_ceiling"]["nvjpeg"] == pytest.approx(m["loader_only"]["images_per_s"]["median"] / nvjpeg["images_per_s"]["median"])
    for phase in ("loader_only", "end_to_end", "model_only"):
        assert m[phase]["resources"]["cuda_max_allocated_bytes"] > 0


# --- issue 14: each library's stock loader as a baseline ----------------------------------------


# FFCV first, torchvision's not here: the .beton writer and DataLoader workers fork, and a fork after
# DALI's or FFCV's threads ran in this process can hang. torchvision's stock loader is measured for
# real in tests/report_records.py (the sweep with --baselines) and checked in tests/test_report.py.
@pytest.mark.parametrize("name", [n for n in ("ffcv", "dali") if n in registry.available_pipelines()])
def test_stock_baseline_of_each_installed_library_is_measured(name, manifest, cache_dir):
    """The library's own stock loader (pipelines/stock), real, loader-only: contract-shaped batches, three timed repeats, the ratio."""
    from bench.harness.baselines import measure_stock, ratio_to_stock
    from bench.harness.throughput import Protocol
    from pipelines import stock

    split = manifest.split("train")
    loader = stock.build(name, split, crop=227, batch_size=8, workers=1, seed=0, device=torch.device("cpu"), cache_dir=str(cache_dir))
    images, labels = next(iter(loader))
    loader.close()
    assert images.shape == (8, 3, 227, 227) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert set(labels.tolist()) <= set(split.labels) and -3 < images.mean() < 3  # normalised with ImageNet's mean and std
    protocol = Protocol(warmup_batches=1, batches_per_repeat=1, loader_batches_per_repeat=2, repeats=3, ceiling_images=8)
    result = measure_stock(name, split, crop=227, batch_size=8, workers=1, seed=0, device=torch.device("cpu"), cache_dir=str(cache_dir), protocol=protocol)
    check_stats(result["loader_only"]["images_per_s"], 3)
    assert result["name"] == name and result["reproduces"] == stock.describe(name)
    assert ratio_to_stock(100.0, result) == pytest.approx(100.0 / result["loader_only"]["images_per_s"]["median"])
    assert ratio_to_stock(100.0, {"name": "x", "skipped": "why"}) is None


def test_baselines_and_feed_target_are_checked(cli_env, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    for args, message in ((["--harness", "accuracy", "--baselines"], "--baselines is for --harness throughput only"),
                          (["--harness", "throughput", "--feed-target", "-5"], "--feed-target must be a rate of 0 or more")):
        out = subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(tmp_path)], cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
