"""Execution modes: the two-tower network equals the grouped one; DDP equals one big batch;
sharding, emulation labels and the CLI's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from bench.modes.launch import launch_config
from model.alexnet import AlexNet
from model.two_tower import TwoTowerAlexNet, merge_state_dict, split_state_dict
from tests.conftest import REPO
from torch.distributed.launcher.api import elastic_launch


def pair(**kwargs) -> tuple[AlexNet, TwoTowerAlexNet]:
    torch.manual_seed(0)
    single = AlexNet(num_classes=10, init="he", **kwargs).double()
    towers = TwoTowerAlexNet(num_classes=10, **kwargs).double()
    towers.load_state_dict(split_state_dict(single.state_dict()))
    return single, towers


@pytest.mark.parametrize("activation,lrn", [("relu", "authors"), ("tanh", "paper")])
def test_two_towers_give_the_same_logits_loss_and_gradients_with_dropout_on(activation, lrn):
    """Training mode, dropout 0.5: one seed draws one mask per neuron, and each tower takes its half of it."""
    single, towers = pair(activation=activation, lrn=lrn)
    assert single.training and towers.training and towers.drop6.p == 0.5
    x = torch.randn(2, 3, 227, 227, dtype=torch.float64)
    y = torch.tensor([1, 5])
    torch.manual_seed(7)
    out_s = single(x)
    torch.manual_seed(7)
    out_t = towers(x)
    assert torch.allclose(out_s, out_t, rtol=0, atol=1e-12)
    torch.manual_seed(8)
    assert not torch.allclose(single(x), out_s, atol=1e-3)  # the masks matter: another draw gives other logits
    loss_s, loss_t = nn.functional.cross_entropy(out_s, y), nn.functional.cross_entropy(out_t, y)
    assert loss_s.item() == pytest.approx(loss_t.item(), rel=0, abs=1e-12)
    loss_s.backward()
    loss_t.backward()
    grads_t = merge_state_dict({k: p.grad for k, p in towers.named_parameters()})
    for k, p in single.named_parameters():
        assert torch.allclose(p.grad, grads_t[k], rtol=0, atol=1e-12), k


def test_weights_convert_both_ways():
    single, towers = pair()
    back = merge_state_dict(towers.state_dict())
    assert back.keys() == single.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in single.state_dict().items())
    assert sum(p.numel() for p in towers.parameters()) == sum(p.numel() for p in single.parameters())


def test_only_conv3_and_the_fully_connected_layers_read_both_towers():
    _, towers = pair()
    t = towers.tower_a
    assert (t.stage1.conv1.out_channels, t.stage1.conv2.in_channels, t.stage1.conv2.out_channels) == (48, 48, 128)
    assert (t.stage2.conv3.in_channels, t.stage2.conv3.out_channels) == (256, 192)  # both towers' 128 maps
    assert (t.stage2.conv4.in_channels, t.stage2.conv5.in_channels, t.stage2.conv5.out_channels) == (192, 192, 128)  # own only
    assert (t.fc6.fc6.in_features, t.fc6.fc6.out_features, t.fc7.fc7.in_features, t.fc7.fc7.out_features) == (9216, 2048, 4096, 2048)
    assert towers.fc8.in_features == 4096


def test_one_device_is_labelled_emulated():
    from bench.modes.model_parallel import ModelParallel

    mode = ModelParallel((torch.device("cpu"), torch.device("cpu")))
    d = mode.describe()
    assert d["emulated"] is True and "emulated" in d["note"] and d["devices"] == ["cpu"]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_towers_on_two_gpus_match_the_cpu():
    single, _ = pair()
    single.eval()
    towers = TwoTowerAlexNet(num_classes=10, devices=("cuda:0", "cuda:1")).double().eval()
    towers.load_state_dict(split_state_dict(single.state_dict()))
    assert not towers.emulated
    x = torch.randn(2, 3, 227, 227, dtype=torch.float64)
    assert torch.allclose(single(x), towers(x.cuda()).cpu(), atol=1e-9)


def test_every_copy_that_needs_no_tower_result_is_issued_before_any_tower_work():
    """A cross-device copy is a two-way barrier: ``x.to(tower B)`` issued after tower A's conv1 makes B wait for A (issue 13)."""
    from torch.overrides import TorchFunctionMode

    _, towers = pair()
    x = torch.randn(2, 3, 227, 227, dtype=torch.float64)
    calls: list[str] = []

    class Log(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", str(func))
            if name == "to" and args and args[0] is x:
                calls.append("input copy")
            elif name == "to" and args and args[0]._base is not None:
                calls.append("mask copy")  # tower B's half: a view of the 4,096-unit mask
            elif name == "conv2d":
                calls.append("conv")
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    with Log():
        towers(x)
    first_conv = calls.index("conv")
    assert calls[:first_conv] == ["input copy", "input copy", "mask copy", "mask copy"], calls[: first_conv + 1]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_a_two_gpu_step_is_faster_than_the_same_towers_on_one_gpu():
    """The towers overlap: a training step (forward, backward, SGD) on two GPUs takes clearly less time than on one."""
    import time

    def median_step(devices: tuple[str, str]) -> float:
        torch.manual_seed(0)
        net = TwoTowerAlexNet(num_classes=1000, devices=devices, init="he")
        opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        x = torch.randn(256, 3, 227, 227, device="cuda:0")
        y = torch.randint(0, 1000, (256,), device="cuda:0")
        times = []
        for i in range(13):
            for d in ("cuda:0", "cuda:1"):
                torch.cuda.synchronize(d)
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for d in ("cuda:0", "cuda:1"):
                torch.cuda.synchronize(d)
            if i >= 3:  # warm-up excluded
                times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    one, two = median_step(("cuda:0", "cuda:0")), median_step(("cuda:0", "cuda:1"))
    assert two < 0.85 * one, f"two GPUs {two * 1e3:.1f} ms a step, one GPU {one * 1e3:.1f} ms: the towers do not overlap"


@pytest.mark.slow
def test_ddp_step_on_two_gloo_processes_equals_one_process_with_the_whole_batch():
    from tests import ddp_workers

    results = elastic_launch(launch_config(2), ddp_workers.ddp_step_difference)()
    assert sorted(results) == [0, 1]
    assert max(results.values()) < 1e-12, results


def bench_run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--mode", "data-parallel", "--nproc", "0"], "--nproc must be a whole number of at least 1"),
        (["--mode", "model-parallel", "--model", "alexnet_torchvision"], "use --model alexnet"),
        (["--mode", "model-parallel", "--mp-devices", "cuda:0"], "give two devices separated by a comma"),
        (["--mode", "data-parallel", "--batch-scope", "half"], "invalid choice: 'half'"),
    ],
)
def test_mode_errors(cli_env, tmp_path, args, message):
    out = bench_run("--out", str(tmp_path), *args, env=cli_env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


@pytest.mark.slow
def test_model_parallel_run_records_emulation(cli_env, small_root, tmp_path):
    out = bench_run("--data", str(small_root), "--out", str(tmp_path), "--mode", "model-parallel", "--epochs", "1",
                    "--steps-per-epoch", "1", "--batch-size", "8", "--workers", "0", "--no-ten-crop", "--no-progress", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "note: model-parallel is emulated here" in out.stdout  # printed even without progress lines
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert record["mode"]["name"] == "model-parallel" and record["mode"]["emulated"] is True
    # A model trained in this mode loads into the single-device network.
    state = torch.load(record["checkpoint"], weights_only=True)["model"]
    AlexNet(num_classes=4).load_state_dict(state)


@pytest.mark.slow
def test_data_parallel_run_on_two_processes(cli_env, small_root, tmp_path):
    out = bench_run("--data", str(small_root), "--out", str(tmp_path), "--mode", "data-parallel", "--nproc", "2", "--epochs", "1",
                    "--batch-size", "8", "--workers", "0", "--no-ten-crop", "--no-progress", env=cli_env)
    assert out.returncode == 0, out.stderr
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]  # rank 0 only
    assert record["mode"]["world_size"] == 2 and record["mode"]["backend"] == "gloo"
    assert record["mode"]["global_batch"] == 8 and record["mode"]["batch_per_process"] == 4
    assert record["metrics"]["val_samples"] == 16  # every validation sample once across the ranks
    # issue 13: each rank gets its share of the cores' threads (or the OMP_NUM_THREADS the user set), recorded
    share = int(os.environ.get("OMP_NUM_THREADS") or max(1, len(os.sched_getaffinity(0)) // 2))
    assert record["mode"]["local_world_size"] == 2 and record["mode"]["intra_op_threads_per_rank"] == share
    assert record["provenance"]["threads"]["torch"] == share and record["provenance"]["threads"]["omp_num_threads"] == str(share)
    assert len(list((tmp_path / "checkpoints").glob("*.pt"))) == 1


@pytest.mark.slow
def test_a_failing_rank_ends_the_job(cli_env, small_copy, tmp_path):
    """A file damaged after the manifest was made (size and time kept) breaks one rank's shard: the job stops, no hang."""
    from bench.data.manifest import load_manifest
    from pipelines.torchvision_pipeline import SeededSampler

    cache = tmp_path / "cache"
    env = {**cli_env, "ALEXNET_BENCH_CACHE": str(cache)}
    split = load_manifest(small_copy, cache, progress=False).split("train")
    rank1_first = next(iter(SeededSampler(len(split), seed=0, shuffle=True, rank=1, world_size=2)))[0]
    victim = split.paths[rank1_first]
    st = os.stat(victim)
    with open(victim, "r+b") as f:
        f.write(b"\0" * 64)  # the JPEG header is gone; the size stays
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = bench_run("--data", str(small_copy), "--out", str(tmp_path / "out"), "--mode", "data-parallel", "--nproc", "2",
                    "--epochs", "1", "--batch-size", "8", "--workers", "0", "--no-ten-crop", "--no-progress", "--lighting-stats", "imagenet", env=env)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert "data-parallel rank 1 failed (" in last and "UnidentifiedImageError" in last, out.stderr
