"""The throughput and relu-tanh harnesses in the other execution modes: model-parallel (emulated
here) and data-parallel (two real gloo processes started by bench.run itself)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.config import RunConfig
from bench.harness import throughput
from tests.conftest import REPO
from tests.test_throughput import TINY


def records(out) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]


def bench_run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_throughput_model_parallel_is_measured_and_labelled_emulated(small_root, cache_dir, tmp_path):
    config = RunConfig.with_preset({**TINY, "mode": "model-parallel", "data": str(small_root), "cache_dir": str(cache_dir), "out": str(tmp_path)})
    record = json.loads(throughput.run(config).read_text())
    assert record["status"] == "complete"
    assert record["mode"]["name"] == "model-parallel" and record["mode"]["emulated"] is True
    for phase in ("loader_only", "end_to_end", "model_only"):
        assert record["metrics"][phase]["images_per_s"]["median"] > 0


@pytest.mark.slow
def test_throughput_data_parallel_sums_the_two_processes(small_root, cli_env, tmp_path):
    out = bench_run("--harness", "throughput", "--mode", "data-parallel", "--nproc", "2", "--data", str(small_root), "--out", str(tmp_path),
                    "--batch-size", "4", "--workers", "0", "--warmup-batches", "1", "--batches-per-repeat", "2",
                    "--loader-batches-per-repeat", "2", "--ceiling-images", "8", "--no-progress", env=cli_env)
    assert out.returncode == 0, out.stderr
    [record] = records(tmp_path)  # rank 0 alone writes, and alone says where (--no-progress prints that anyway)
    assert out.stdout.count("record: ") == 1 and f"record: {next((tmp_path / 'records').glob('*.json'))}" in out.stdout
    assert record["mode"]["world_size"] == 2 and record["mode"]["batch_per_process"] == 2 and record["mode"]["global_batch"] == 4
    for phase in ("loader_only", "end_to_end", "model_only"):
        m = record["metrics"][phase]
        # every repeat counts both processes' images: 2 processes x 2 batches x 2 images
        assert [r["images"] for r in m["repeats"]] == [8, 8, 8], phase
        assert m["images_per_s"]["values"] == pytest.approx([r["images"] / r["seconds"] for r in m["repeats"]])
        assert m["resources"]["note"].startswith("summed over the 2 processes")


@pytest.mark.slow
def test_relu_tanh_data_parallel_matches_one_process(cli_env, tmp_path):
    common = ["--harness", "relu-tanh", "--embedded-classes", "4", "--embedded-train-per-class", "16", "--embedded-val-per-class", "2",
              "--batch-size", "8", "--relu-tanh-lrs", "0.001", "--epochs", "2", "--no-progress"]
    single = bench_run(*common, "--out", str(tmp_path / "one"), env=cli_env)
    assert single.returncode == 0, single.stderr
    double = bench_run(*common, "--mode", "data-parallel", "--nproc", "2", "--out", str(tmp_path / "two"), env=cli_env)
    assert double.returncode == 0, double.stderr
    [a], [b] = records(tmp_path / "one"), records(tmp_path / "two")
    assert single.stdout.count("record: ") == 1 and double.stdout.count("record: ") == 1
    assert b["mode"]["world_size"] == 2
    for activation in ("relu", "tanh"):
        ca, cb = a["results"][activation]["curves"], b["results"][activation]["curves"]
        assert len(ca["batch_error"]) == len(cb["batch_error"])
        # each step sees the same 8 images, half on each process, and DDP averages the two halves' gradients
        assert cb["batch_error"][0] == ca["batch_error"][0]
        assert cb["batch_loss"][:4] == pytest.approx(ca["batch_loss"][:4], rel=1e-4)
