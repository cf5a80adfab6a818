"""Interrupted runs: SIGKILL then --resume reaches the uninterrupted result bit for bit; SIGINT stops
cleanly and records the run as interrupted; files are never half-written; concurrent writers lose nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from pipelines import available_pipelines
from tests.conftest import REPO

# DALI and FFCV are held to the same rules where they are installed (their own threads, not worker processes).
THREADED_PIPELINES = [name for name in available_pipelines() if name != "torchvision"]

RUN = ("--epochs", "3", "--steps-per-epoch", "2", "--batch-size", "8", "--workers", "1", "--no-ten-crop", "--seed", "11")


def start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the point to interrupt it: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def checkpoint_epoch(out: Path) -> int:
    files = list((out / "checkpoints").glob("*.pt")) if (out / "checkpoints").is_dir() else []
    if not files:
        return 0
    try:
        return torch.load(files[0], weights_only=True)["epoch"]
    except Exception:  # noqa: BLE001 - only a complete file counts (and an atomic write never leaves another kind)
        return 0


def final_record(out: Path) -> dict:
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json") if json.loads(p.read_text())["status"] == "complete"]
    return record


def without_timings(curves: dict) -> dict:
    return {k: v for k, v in curves.items() if k not in ("images_per_s", "epoch_seconds")}


def run_to_the_end(args: list[str], out: Path, env: dict) -> dict:
    """Run ``python -m bench.run`` with ``args`` uninterrupted; the final record it wrote under ``out``."""
    proc = subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return final_record(out)


def kill_then_resume(args: list[str], kill_after_epoch: int, env: dict) -> dict:
    """Start a run (``args`` name its ``--out``), SIGKILL it once its checkpoint reaches
    ``kill_after_epoch``, resume it from that checkpoint, and return its final record."""
    out = Path(args[args.index("--out") + 1])
    proc = start(args, env)
    wait_for(lambda: checkpoint_epoch(out) >= kill_after_epoch, proc)
    helpers = psutil.Process(proc.pid).children(recursive=True)  # loader workers, DALI's feed workers
    proc.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(helpers, timeout=15)  # torch's workers look for their parent every 5 s
    left = [" ".join(p.cmdline()[:3]) for p in alive]
    for p in alive:
        p.kill()
    proc.communicate(timeout=60)  # a process left behind would hold the run's output pipes
    assert not left, f"processes outlived the killed run: {left}"
    [ckpt] = (out / "checkpoints").glob("*.pt")
    return run_to_the_end(["--resume", str(ckpt), "--no-progress"], out, env)


@pytest.fixture(scope="module")
def uninterrupted(small_root, cli_env, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("straight")
    yield run_to_the_end(["--data", str(small_root), "--out", str(out), "--no-progress", *RUN], out, cli_env)
    shutil.rmtree(out, ignore_errors=True)  # its checkpoint is ~0.45 GB; keep the session's disk use small


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_epoch", [1, 2])
def test_sigkill_then_resume_matches_the_uninterrupted_run(kill_after_epoch, uninterrupted, small_root, cli_env, tmp_path):
    record = kill_then_resume(["--data", str(small_root), "--out", str(tmp_path / "out"), "--no-progress", *RUN], kill_after_epoch, cli_env)
    assert record["metrics"] == uninterrupted["metrics"]
    assert without_timings(record["curves"]) == without_timings(uninterrupted["curves"])
    a = torch.load(record["checkpoint"], weights_only=True)["model"]
    b = torch.load(uninterrupted["checkpoint"], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigint_stops_cleanly_and_records_the_run_as_interrupted(small_root, cli_env, tmp_path):
    out = tmp_path / "out"
    proc = start(["--data", str(small_root), "--out", str(out), "--workers", "2", "--epochs", "50", "--batch-size", "8", "--no-progress"], cli_env)
    children = []
    wait_for(lambda: checkpoint_epoch(out) >= 1, proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the DataLoader's worker processes should be running"
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["status"] == "interrupted" and len(record["curves"]["epoch"]) >= 1
    assert f"interrupted: continue with python -m bench.run --resume {record['checkpoint']}" in stdout  # issue 16
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"worker processes left behind: {alive}"


@pytest.fixture(scope="module")
def uninterrupted_by_pipeline(small_root, cli_env, tmp_path_factory):
    """The uninterrupted run of each threaded pipeline, made once per module and pipeline: its record
    (metrics and curves) is kept, its folder (with a ~0.45 GB checkpoint no test reads) removed at once."""
    runs: dict[str, dict] = {}

    def run(pipeline: str) -> dict:
        if pipeline not in runs:
            out = tmp_path_factory.mktemp(f"straight-{pipeline}")
            runs[pipeline] = run_to_the_end(["--pipeline", pipeline, "--data", str(small_root), "--out", str(out), "--no-progress", *RUN],
                                            out, cli_env)
            shutil.rmtree(out, ignore_errors=True)
        return runs[pipeline]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", THREADED_PIPELINES)
def test_threaded_pipelines_resume_after_sigkill_to_the_uninterrupted_result(pipeline, uninterrupted_by_pipeline, small_root, cli_env, tmp_path):
    straight = uninterrupted_by_pipeline(pipeline)
    record = kill_then_resume(["--pipeline", pipeline, "--data", str(small_root), "--out", str(tmp_path / "out"), "--no-progress", *RUN], 1, cli_env)
    assert record["pipeline"]["name"] == pipeline
    assert record["metrics"] == straight["metrics"]
    assert without_timings(record["curves"]) == without_timings(straight["curves"])


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", THREADED_PIPELINES)
def test_threaded_pipelines_stop_cleanly_on_sigint(pipeline, small_root, cli_env, tmp_path):
    out = tmp_path / "out"
    proc = start(["--pipeline", pipeline, "--data", str(small_root), "--out", str(out), "--workers", "2", "--epochs", "50",
                  "--batch-size", "8", "--no-progress"], cli_env)
    wait_for(lambda: checkpoint_epoch(out) >= 1, proc)
    assert psutil.Process(proc.pid).num_threads() > 1, f"{pipeline}'s loading threads should be running"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)  # a thread left running would keep the process alive past this
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["status"] == "interrupted" and record["pipeline"]["name"] == pipeline


WRITER = """
import sys, time
from bench.checkpoint import save_checkpoint
import torch
state = {"epoch": 0, "model": {"w": torch.zeros(4_000_000)}}
n = 0
while True:
    n += 1
    state["epoch"] = n
    save_checkpoint(sys.argv[1], state)
"""


@pytest.mark.slow
def test_a_checkpoint_killed_mid_write_leaves_the_previous_good_one(cli_env, tmp_path):
    target = tmp_path / "ckpt.pt"
    for delay in (0.0, 0.05, 0.13, 0.21, 0.34):  # after the first complete write: somewhere in a later one
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=REPO, env=cli_env)
        deadline = time.monotonic() + 120
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = torch.load(target, weights_only=True)  # the last complete write, never a torn one
        assert state["model"]["w"].shape == (4_000_000,) and state["epoch"] >= 1
        target.unlink()
    # What a killed writer leaves is a hidden temporary that no reader looks for.
    assert all(p.name.startswith(".ckpt.pt.") and p.name.endswith(".partial") for p in tmp_path.iterdir())


RECORDER = """
import sys
from bench.records import write_record
for i in range(int(sys.argv[3])):
    write_record(sys.argv[1], {"run_id": f"{sys.argv[2]}-{i}", "harness": "accuracy", "status": "complete", "payload": list(range(2000))})
"""


def test_concurrent_record_writers_lose_nothing(cli_env, tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, str(tmp_path), f"w{w}", "60"], cwd=REPO, env=cli_env) for w in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0] * 4
    files = sorted((tmp_path / "records").iterdir())
    assert len(files) == 240
    for f in files:
        assert len(json.loads(f.read_text())["payload"]) == 2000


@pytest.mark.slow
def test_same_seed_same_curves_bit_for_bit_and_rerun_reproduces(uninterrupted, small_root, cli_env, tmp_path):
    again = subprocess.run([sys.executable, "-m", "bench.run", "--data", str(small_root), "--out", str(tmp_path / "a"), "--no-progress", *RUN],
                           cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert without_timings(final_record(tmp_path / "a")["curves"]) == without_timings(uninterrupted["curves"])
    record_file = next((Path(uninterrupted["checkpoint"]).parent.parent / "records").glob("*.json"))
    rerun = subprocess.run([sys.executable, "-m", "bench.run", "--rerun", str(record_file), "--out", str(tmp_path / "b")],
                           cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    redo = final_record(tmp_path / "b")
    assert without_timings(redo["curves"]) == without_timings(uninterrupted["curves"]) and redo["metrics"] == uninterrupted["metrics"]
    assert redo["run_id"] != uninterrupted["run_id"]
    assert redo["reproducibility"] == {"sample_order": True, "augmentation": True, "bitwise_curves": True, "notes": redo["reproducibility"]["notes"]}


CEILING = """
import sys
from bench.harness.ceiling import cpu_ceiling
cpu_ceiling(sys.argv[1:] * 50, repeats=1000, processes=2)
"""


def test_decode_ceiling_workers_die_with_a_run_stopped_by_sigterm(manifest, cli_env):
    # torchrun's agent stops the surviving ranks of a failed data-parallel job with SIGTERM, and a signal
    # runs no clean-up: the decode ceiling's pool workers were left waiting on their queue for ever
    paths = manifest.split("train").paths[:4]
    proc = subprocess.Popen([sys.executable, "-c", CEILING, *paths], cwd=REPO, env=cli_env)
    wait_for(lambda: len(psutil.Process(proc.pid).children()) >= 2, proc, timeout=120)
    workers = psutil.Process(proc.pid).children(recursive=True)
    time.sleep(1)  # the pool is at work
    proc.send_signal(signal.SIGTERM)  # what die_with answers does not depend on the signal: SIGKILL too
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    left = [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        p.kill()
    assert not left, f"decode workers outlived the stopped run: {left}"
