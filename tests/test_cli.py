"""``python -m bench.run``: help, user errors (one line, exit 2, no traceback), a real run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.run import HELP, build_parser
from tests.conftest import REPO


def bench_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_help_explains_every_flag(cli_env):
    out = bench_run("--help", env=cli_env)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for name in HELP:
        assert "--" + name.replace("_", "-") in text
    assert "--no-progress" in text and "--config" in text


def test_every_flag_has_help():
    for action in build_parser()._actions:
        assert action.help, action.option_strings


@pytest.mark.parametrize(
    "args,message",
    [
        (["--pipeline", "nope"], "unknown pipeline 'nope'"),
        (["--mode", "sideways"], "invalid choice: 'sideways'"),
        (["--epochs", "-1"], "--epochs must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--epochs", "two"], "invalid int value: 'two'"),
        (["--data", "/nonexistent/imagenet"], "data root /nonexistent/imagenet does not exist"),
        (["--resume", "/nonexistent/ckpt.pt"], "no checkpoint at /nonexistent/ckpt.pt"),
        (["--config", "/nonexistent/run.yaml"], "cannot read config /nonexistent/run.yaml"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(cli_env, tmp_path, args, message):
    out = bench_run("--out", str(tmp_path), *args, env=cli_env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert message in out.stderr
    assert not (tmp_path / "records").exists()


def test_cuda_requested_without_a_gpu(cli_env, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = bench_run("--device", "cuda", "--out", str(tmp_path), env=cli_env)
    assert out.returncode == 2 and out.stderr.strip().endswith("no CUDA GPU is visible on this machine")


def test_config_file_with_an_unknown_key(cli_env, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epochs: 2\nlearning_rate: 0.1\n")
    out = bench_run("--config", str(cfg), env=cli_env)
    assert out.returncode == 2 and f"{cfg}: unknown key(s) learning_rate" in out.stderr


def test_a_corrupt_checkpoint_is_refused(cli_env, tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    out = bench_run("--resume", str(bad), env=cli_env)
    assert out.returncode == 2 and f"{bad} is not a readable checkpoint" in out.stderr


@pytest.mark.slow
def test_a_real_run_writes_a_complete_record(cli_env, small_root, tmp_path):
    out = bench_run(
        "--data", str(small_root), "--out", str(tmp_path), "--epochs", "1", "--steps-per-epoch", "1",
        "--batch-size", "8", "--workers", "1", "--no-progress", env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    [path] = (tmp_path / "records").glob("*.json")
    record = json.loads(path.read_text())
    assert record["schema_version"] == 1 and record["status"] == "complete"
    assert record["config"]["preset"] == "paper" and record["config"]["init"] == "paper"
    assert record["dataset"]["fingerprint"] and record["dataset"]["counts"]["train"]["ok"] == 48
    prov = record["provenance"]
    assert prov["git"]["commit"] and prov["packages"]["torch"].startswith("2.14.1")
    assert prov["hardware"]["cpu_count"] >= 1 and "key" in prov["hardware"] and prov["seed"] == 0
    assert set(record["curves"]) >= {"train_loss", "val_top1_err", "val_top5_err", "images_per_s", "lr"}
    assert set(record["metrics"]) == {"top1_err_centre", "top5_err_centre", "top1_err_10crop", "top5_err_10crop", "val_samples"}
    assert (tmp_path / "checkpoints" / f"{record['run_id']}.pt").is_file()
    assert not list(tmp_path.rglob("*.partial"))
