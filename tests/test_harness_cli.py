"""The harness flags of ``python -m bench.run``: bad values are one line, exit 2, no traceback,
no record; a real throughput run and a real relu-tanh run from the command line."""

from __future__ import annotations

import json

import pytest

from bench.config import RunConfig
from tests.test_cli import bench_run


@pytest.mark.parametrize(
    "args,message",
    [
        (["--harness", "throughput", "--repeats", "2"], "--repeats must be at least 3"),
        (["--harness", "throughput", "--warmup-batches", "-1"], "--warmup-batches must be 0 or more"),
        (["--harness", "throughput", "--ceiling-images", "0"], "--ceiling-images must be at least 1"),
        (["--harness", "throughput", "--sweep-workers", "1,two"], "--sweep-workers '1,two': expected comma-separated int values"),
        (["--harness", "throughput", "--sweep-batch-sizes", "8,0"], "--sweep-batch-sizes '8,0': batch sizes must be at least 1"),
        (["--harness", "throughput", "--sweep-pipelines", "installed,torchvision"], "'installed' stands alone"),
        (["--harness", "throughput", "--sweep-pipelines", "torchvision,nope"], "--sweep-pipelines: unknown pipeline 'nope'"),
        (["--sweep-workers", "1,2"], "--sweep-workers is for --harness throughput only"),
        (["--harness", "throughput", "--model", "convnet4"], "--model convnet4 takes 32x32 images; use it with --harness relu-tanh"),
        (["--harness", "throughput", "--model", "vgg"], "--model 'vgg' is not one of: alexnet, alexnet_torchvision, conv_local_11pct, conv_local_13pct, convnet4"),
        (["--harness", "relu-tanh", "--relu-tanh-lrs", "0.01,-1"], "--relu-tanh-lrs '0.01,-1': give one or more positive learning rates"),
        (["--harness", "relu-tanh", "--relu-tanh-lrs", "fast"], "--relu-tanh-lrs 'fast': expected comma-separated float values"),
        (["--harness", "relu-tanh", "--relu-tanh-target-error", "1.5"], "--relu-tanh-target-error must be in (0, 1)"),
        (["--harness", "relu-tanh", "--relu-tanh-sweep-iterations", "-3"], "--relu-tanh-sweep-iterations must be 0 or more"),
        (["--harness", "relu-tanh", "--data", "/nonexistent/cifar"], "--data /nonexistent/cifar: no CIFAR-10 in torchvision's format there"),
        (["--harness", "relu-tanh", "--batch-size", "100000"], "--batch-size 100000: the training split has only 2600 images"),
        (["--harness", "sideways"], "invalid choice: 'sideways'"),
    ],
)
def test_bad_harness_flags_are_one_line_and_exit_2(cli_env, tmp_path, args, message):
    out = bench_run("--out", str(tmp_path), *args, env=cli_env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert message in out.stderr
    assert not (tmp_path / "records").exists()


def test_a_batch_larger_than_the_data_is_refused_before_anything_runs(cli_env, small_root, tmp_path):
    out = bench_run("--harness", "throughput", "--data", str(small_root), "--batch-size", "64", "--out", str(tmp_path), env=cli_env)
    assert out.returncode == 2 and "--batch-size 64: the training split has only 48 images" in out.stderr
    assert not (tmp_path / "records").exists()


def test_harness_defaults_apply_unless_given():
    rt = RunConfig.with_preset({"harness": "relu-tanh"})
    assert (rt.model, rt.epochs, rt.weight_decay, rt.preset) == ("conv_local_13pct", 0, 0.0, "embedded-cpu")
    given = RunConfig.with_preset({"harness": "relu-tanh", "model": "alexnet", "epochs": 5, "weight_decay": 1e-4})
    assert (given.model, given.epochs, given.weight_decay) == ("alexnet", 5, 1e-4)
    accuracy = RunConfig.with_preset({})
    assert (accuracy.model, accuracy.epochs) == ("alexnet", 3)


@pytest.mark.slow
def test_throughput_from_the_command_line(cli_env, small_root, tmp_path):
    out = bench_run("--harness", "throughput", "--data", str(small_root), "--out", str(tmp_path), "--batch-size", "4",
                    "--workers", "0", "--warmup-batches", "1", "--batches-per-repeat", "1", "--loader-batches-per-repeat", "1",
                    "--ceiling-images", "4", "--model", "alexnet_torchvision", env=cli_env)
    assert out.returncode == 0, out.stderr
    [path] = (tmp_path / "records").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "complete" and record["model"]["name"] == "alexnet_torchvision"
    assert "stall fraction" in out.stdout and f"record: {path}" in out.stdout
