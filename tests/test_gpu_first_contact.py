"""Issue 13: what a first GPU run must get right, checked on the CPU where the logic allows
(a fake ``nvidia-smi`` on PATH, fake device files, a fake device count)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from bench import driver
from bench.errors import UserError
from bench.train import resolve_device
from tests.conftest import REPO

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what happens when torch sees no GPU")


def fake_nvidia_smi(bin_dir, driver_version="550.54.15"):
    """An ``nvidia-smi`` that reports one H100 on an old driver, as on a machine whose driver predates CUDA 13."""
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, {driver_version}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(bin_dir) + os.pathsep + os.environ["PATH"]


@no_gpu
def test_auto_on_the_cpu_beside_gpus_says_why_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "bin"))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # said once per process, however often resolved
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("--device auto: running on the CPU: 1 GPU(s) (NVIDIA H100 80GB HBM3) present")
    assert "driver 550.54.15" in err and "CUDA 13 needs driver 580 or newer" in err and "upgrade the NVIDIA driver" in err


@no_gpu
def test_device_files_alone_are_enough_to_say_so(tmp_path, monkeypatch, capsys):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidia0").touch()
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr(driver, "DEV", tmp_path / "dev")
    monkeypatch.setattr(driver, "driver_version", lambda: None)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert resolve_device("auto") == torch.device("cpu")
    assert "GPU device files (nvidia0) present" in capsys.readouterr().err
    with pytest.raises(UserError, match="no working NVIDIA driver"):
        resolve_device("cuda")


@no_gpu
def test_no_gpu_anywhere_is_silent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(driver, "DEV", tmp_path)
    assert resolve_device("auto") == torch.device("cpu") and capsys.readouterr().err == ""


@no_gpu
def test_device_cuda_on_an_old_driver_names_the_driver(cli_env, tmp_path):
    env = {**cli_env, "PATH": fake_nvidia_smi(tmp_path / "bin")}
    out = subprocess.run([sys.executable, "-m", "bench.run", "--device", "cuda", "--out", str(tmp_path)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("python -m bench.run: error: --device cuda: 1 GPU(s) (NVIDIA H100 80GB HBM3) present")
    assert "driver 550.54.15" in out.stderr and "needs driver 580 or newer" in out.stderr


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch.cuda as on a machine with two GPUs, the current one cuda:0 (no kernel runs)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_one_gpu_named_twice_is_an_emulated_model_parallel_run(two_fake_gpus):
    from bench.modes.model_parallel import ModelParallel, tower_devices

    towers = tower_devices("cuda,cuda:0", torch.device("cuda"))
    assert towers == (torch.device("cuda:0"), torch.device("cuda:0"))
    described = ModelParallel(towers).describe()
    assert described["emulated"] is True and described["devices"] == ["cuda:0"]
    assert ModelParallel((torch.device("cuda"), torch.device("cuda:1"))).describe()["towers"] == ["cuda:0", "cuda:1"]
    assert resolve_device("cuda") == torch.device("cuda:0")


def test_peak_gpu_memory_is_recorded_for_every_device(two_fake_gpus, monkeypatch):
    from bench.harness.resources import ResourceMonitor

    peaks = {0: 3_000, 1: 5_000}
    reset = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: reset.append(str(d)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: peaks[d.index])
    with ResourceMonitor([torch.device("cuda:0"), torch.device("cuda:1")]) as monitor:
        pass
    res = monitor.result()
    assert reset == ["cuda:0", "cuda:1"]
    assert res["cuda_max_allocated_bytes_by_device"] == {"cuda:0": 3_000, "cuda:1": 5_000}
    assert res["cuda_max_allocated_bytes"] == 3_000  # the input device's, as before


class Batches:
    """A loader's interface over fixed batches."""

    def __init__(self, batches):
        self.batches = batches
        self.num_samples = sum(len(b[1]) for b in batches)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


@pytest.fixture
def host_reads(monkeypatch):
    """Every read of a tensor's value into Python (what waits for a GPU), counted."""
    reads = []
    for name in ("item", "__int__", "__float__", "__bool__", "__index__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads


def test_training_and_evaluation_read_the_device_once_per_epoch_not_per_step(host_reads):
    from bench.evaluate import evaluate
    from bench.train import train_epoch

    torch.manual_seed(0)
    batches = [(torch.randn(4, 12), torch.randint(0, 3, (4,))) for _ in range(6)]
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    result = train_epoch(net, Batches(batches), optimizer, progress=False)
    assert result.seen == 24 and 0 <= result.wrong <= 24 and result.loss > 0
    assert len(host_reads) <= 2, host_reads  # the loss sum and the error count, once each
    host_reads.clear()
    errors = evaluate(net, Batches(batches))
    assert errors.samples == 24 and len(host_reads) <= 2, host_reads


def test_the_default_worker_count_is_shared_among_a_jobs_local_processes(monkeypatch):
    from bench.config import RunConfig

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(200)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert RunConfig().workers == 200
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # torchrun's, in each of 8 ranks: not 8 x 200 loader processes
    assert RunConfig().workers == 25
    assert RunConfig(workers=3).workers == 3


@pytest.mark.slow
def test_ranks_agree_on_a_failed_sweep_point_and_skip_it_together(small_root, cache_dir, tmp_path):
    """Rank 0 alone measures the decode ceiling; when that fails, both ranks skip the point, and the next
    point's collectives pair up (before: rank 1 waited at the point's barrier while rank 0 moved on)."""
    import json

    from torch.distributed.launcher.api import elastic_launch

    from bench.modes.launch import launch_config
    from tests import ddp_workers

    results = elastic_launch(launch_config(2), ddp_workers.sweep_with_a_ceiling_failing_on_rank_0)(
        str(small_root), str(cache_dir), str(tmp_path))
    assert results[1] == [] and len(results[0]) == 1
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")), key=lambda r: r["sweep"]["index"])
    assert [(r["sweep"]["index"], r["status"], r["batch_size"]) for r in records] == [(0, "failed", 4), (1, "complete", 8)]
    assert "nvJPEG ceiling failed" in records[0]["error"]
    assert [r["images"] for r in records[1]["metrics"]["end_to_end"]["repeats"]] == [8, 8, 8]  # both ranks' 4 images


@pytest.mark.slow
def test_a_rank_failing_inside_a_timed_phase_ends_the_job_naming_its_error(small_root, cache_dir, tmp_path):
    """Rank 1 fails at a training step while rank 0 waits for it in DDP's all-reduce: rank 1 hears
    nothing back when the ranks agree on the point, and ends the job with its own error (the launcher
    then stops rank 0). Before: rank 0 waited out the process group's timeout, and the job's first
    failure was rank 0's 'Application timeout caused pair closure'."""
    import json

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    from bench.modes.launch import launch_config
    from tests import ddp_workers

    with pytest.raises(ChildFailedError) as failed:
        elastic_launch(launch_config(2), ddp_workers.sweep_with_a_step_failing_on_rank_1)(str(small_root), str(cache_dir), str(tmp_path))
    rank, failure = failed.value.get_first_failure()
    message = failure.message["message"] if isinstance(failure.message, dict) else str(failure.message)
    assert rank == 1, message
    assert "JobMustEnd: sweep point 1: RuntimeError: a training step failed on rank 1 alone" in message
    assert "not every process answered within 5 s" in message
    for path in tmp_path.glob("records/*.json"):  # rank 0's record of the point, where it wrote one: failed, not by a timeout
        record = json.loads(path.read_text())
        assert record["status"] == "failed" and "timeout" not in record["error"].lower(), record["error"]


def test_the_manifest_is_made_before_data_parallel_processes_start(small_root, tmp_path, monkeypatch):
    from bench.config import RunConfig
    from bench.harness import dispatch
    from bench.modes import launch

    cache = tmp_path / "cache"
    seen = []
    monkeypatch.setattr(launch, "launch", lambda argv, nproc: seen.append(sorted(p.name for p in (cache / "manifests").glob("*.json"))))
    monkeypatch.delenv("RANK", raising=False)
    config = RunConfig.with_preset(dict(harness="throughput", mode="data-parallel", device="cpu", nproc="2", data=str(small_root),
                                        cache_dir=str(cache), out=str(tmp_path / "out"), progress=False, preset="embedded-cpu"))
    dispatch.run(config, [])
    assert len(seen) == 1 and len(seen[0]) == 1  # the cache held the manifest when the processes were started


def test_bf16_autocast_and_channels_last_reach_the_network():
    from bench.train import train_step

    seen = {}
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    net[0].register_forward_hook(lambda m, args, out: seen.update(channels_last=args[0].is_contiguous(memory_format=torch.channels_last), dtype=out.dtype))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    images, labels = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    loss, logits = train_step(net, optimizer, images, labels, precision="bf16", channels_last=True)
    assert seen == {"channels_last": True, "dtype": torch.bfloat16} and logits.dtype == torch.bfloat16
    assert net[0].weight.dtype == torch.float32 and loss.dtype == torch.float32  # float32 weights; the loss autocasts up
    train_step(net, optimizer, images, labels)
    assert seen == {"channels_last": False, "dtype": torch.float32}


def test_a_throughput_record_says_how_the_model_computed(small_root, cache_dir, tmp_path):
    import json

    from bench.config import RunConfig
    from bench.harness import throughput
    from bench.report.loading import common_columns
    from tests.test_throughput import TINY

    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    config = RunConfig.with_preset({**TINY, "workers": 0, "data": str(small_root), "cache_dir": str(cache_dir), "out": str(tmp_path),
                                    "precision": "bf16", "channels_last": True})
    record = json.loads(throughput.run(config).read_text())
    assert record["status"] == "complete"
    compute = record["provenance"]["compute"]
    assert compute["precision"] == "bf16" and compute["channels_last"] is True
    assert compute["cudnn_benchmark"] is False  # on for throughput on a GPU only; recorded as it ran
    assert compute["cudnn_allow_tf32"] is False and compute["matmul_allow_tf32"] is False
    assert {"cudnn_version", "nvidia_driver", "cudnn_deterministic"} <= compute.keys()
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32) == before  # the run's settings do not leak
    assert common_columns(record, "x.json")["precision"] == "bf16"
    # issue 13 defect 7: 48 images in batches of 4: 12 a epoch; every repeat within one, the starts timed apart
    assert record["protocol"]["epoch_batches"] == 12
    assert all("epoch_starts" in record["metrics"][p] for p in ("loader_only", "end_to_end"))
    gpucheck_reads_a_record(record)


def gpucheck_reads_a_record(record: dict) -> None:
    """bench.gpucheck's checks on a CPU-made record (which must fail where a GPU is wanted), then on
    the same record with what a GPU run writes."""
    import copy

    from bench.gpucheck import goal_check, record_checks

    def verdicts(r):
        return {c.what.split(": ", 1)[1]: c.ok for c in record_checks(r)}

    assert verdicts(record) == {"complete": True, "on the GPU": False, "nvJPEG ceiling present": False,
                                "model-only rate present": True, "stall fraction present": True}
    gpu = copy.deepcopy(record)
    gpu["mode"]["devices"] = ["cuda:0"]
    gpu["metrics"]["decode_ceiling"]["nvjpeg"] = {"images_per_s": {"median": 9000.0}}
    assert all(verdicts(gpu).values())
    gpu["pipeline"] = {"name": "dali", "decoder": "cpu"}
    assert verdicts(gpu)["DALI decoder mixed"] is False
    gpu["pipeline"] = {"name": "ffcv", "on_device": "ToDevice(non_blocking) + lighting and normalisation on the GPU"}
    assert verdicts(gpu)["FFCV on the device"] is True
    gpu["mode"].update(name="data-parallel", backend="gloo", world_size=2)
    assert verdicts(gpu)["backend nccl"] is False
    assert goal_check(record).ok is False  # batch 4 on a CPU: not the goal's settings
    gpu.update(batch_size=256)
    gpu["provenance"]["hardware"]["gpus"] = ["NVIDIA H100 80GB HBM3"]
    gpu["metrics"]["model_only"]["images_per_s"]["median"] = 16_000.0
    assert goal_check(gpu).ok is True and goal_check(gpu).figure == "16000 img/s on NVIDIA H100 80GB HBM3"  # the report's frame carries it beside every figure


def test_the_accuracy_default_is_the_papers_fp32():
    from bench.config import RunConfig
    from bench.precision import set_precision
    from bench.provenance import provenance

    assert RunConfig().precision == "fp32" and RunConfig().channels_last is False
    set_precision(RunConfig().precision)
    try:
        compute = provenance(0, RunConfig())["compute"]
        assert compute["precision"] == "fp32" and compute["cudnn_allow_tf32"] is False  # torch's default is True: not fp32 on an H100
    finally:
        torch.backends.cudnn.allow_tf32 = True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_throughput_runs_bf16_channels_last_with_cudnn_benchmark(small_root, cache_dir, tmp_path):
    import json

    from bench.config import RunConfig
    from bench.harness import throughput
    from tests.test_throughput import TINY

    config = RunConfig.with_preset({**TINY, "device": "cuda", "data": str(small_root), "cache_dir": str(cache_dir), "out": str(tmp_path),
                                    "precision": "bf16", "channels_last": True})
    record = json.loads(throughput.run(config).read_text())
    compute = record["provenance"]["compute"]
    assert record["status"] == "complete" and compute["cudnn_benchmark"] is True and compute["precision"] == "bf16"
    assert compute["cudnn_version"] and compute["nvidia_driver"]
    assert record["metrics"]["model_only"]["resources"]["cuda_max_allocated_bytes_by_device"]


class Epochs:
    """A loader of ``batches`` one-image batches per epoch that notes when an epoch starts."""

    def __init__(self, batches):
        self.batches, self.epoch, self.log = batches, -1, []

    def __len__(self):
        return self.batches

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        self.log.append(("start", self.epoch))
        for _ in range(self.batches):
            yield torch.zeros(1), torch.tensor([self.epoch])


def test_no_timed_repeat_holds_an_epoch_start():
    from bench.harness.stream import BatchStream
    from bench.harness.timing import run_phase

    loader = Epochs(5)
    stream = BatchStream(loader)

    def work():
        loader.log.append(("batch", int(next(stream)[1])))
        return 1

    def boundary():
        loader.log.append(("boundary",))

    def before_repeat():
        loader.log.append(("pre",))
        stream.fit(3)

    run_phase(work, warmup=2, steps=3, repeats=4, device=torch.device("cpu"), boundary=boundary, before_repeat=before_repeat)
    repeats = []
    for segment in " ".join("|".join(map(str, e)) for e in loader.log).split("pre")[1:]:
        timed = segment.split("boundary")[1]  # between the repeat's opening and closing boundaries
        repeats.append([tuple(w.split("|")) for w in timed.split()])
    assert len(repeats) == 4
    for timed in repeats:  # three batches of one epoch, and no start among them
        assert [e[0] for e in timed] == ["batch"] * 3 and len({e[1] for e in timed}) == 1, loader.log
    assert len(stream.epoch_start_seconds) == 3  # 2 warm-up + 3 fill epoch 0; each later repeat starts a fresh one, untimed


@no_gpu
def test_gpucheck_without_a_gpu_says_so_in_one_line_and_exits_2(cli_env):
    """On a bare machine (no DALI, FFCV, pandas, matplotlib or pytest importable): no crash, one line, exit 2."""
    script = ("import sys, runpy\n"
              "for m in ('pandas', 'matplotlib', 'nvidia', 'ffcv', 'pytest'): sys.modules[m] = None\n"
              "sys.argv = ['gpucheck']\n"
              "runpy.run_module('bench.gpucheck', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stdout == "", out.stderr
    assert out.stderr.startswith("python -m bench.gpucheck: no usable CUDA GPU here")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_a_training_epoch_waits_for_the_device_once():
    """torch's sync debug mode warns at every host-device synchronisation: an epoch of 6 steps makes at most 2."""
    import warnings

    from bench.train import train_epoch

    device = torch.device("cuda:0")
    batches = [(torch.randn(4, 12, device=device), torch.randint(0, 3, (4,), device=device)) for _ in range(6)]
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    train_epoch(net, Batches(batches), optimizer, progress=False)  # warm-up: lazy CUDA initialisation
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(net, Batches(batches), optimizer, progress=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2, [str(w.message) for w in syncs]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_on_two_gpus_model_parallel_records_both_gpus_memory(small_root, cache_dir, tmp_path):
    import json

    from bench.config import RunConfig
    from bench.harness import throughput
    from tests.test_throughput import TINY

    config = RunConfig.with_preset({**TINY, "device": "cuda", "mode": "model-parallel", "data": str(small_root), "cache_dir": str(cache_dir),
                                    "out": str(tmp_path)})
    record = json.loads(throughput.run(config).read_text())
    assert record["mode"]["emulated"] is False and record["mode"]["devices"] == ["cuda:0", "cuda:1"]
    peaks = record["metrics"]["model_only"]["resources"]["cuda_max_allocated_bytes_by_device"]
    assert set(peaks) == {"cuda:0", "cuda:1"} and min(peaks.values()) > 0
