"""pytest-benchmark benchmarks, run by ``pytest --benchmark-only`` (a plain ``pytest`` skips them).

Groups: ``loader:<pipeline>`` (one training batch through each installed pipeline's loader;
the split holds every round's batch, so no timed round starts an epoch: a pipeline's set-up
is not timed as a batch), ``train-step:<mode>`` (one training step of the
paper's AlexNet, 1000 classes, per execution mode), ``lrn`` (the paper's LRN, forward and
backward, on conv1's output). Save and compare runs with pytest-benchmark's own flags:

    pytest --benchmark-only --benchmark-autosave
    pytest --benchmark-only --benchmark-compare      # against the last saved run

These are micro-benchmarks for spotting regressions; the figures a report uses come from
the throughput harness (``python -m bench.run --harness throughput``).
"""

from __future__ import annotations

import socket

import pytest
import torch

from bench.builders import build_model
from bench.config import MODES, RunConfig
from bench.data.manifest import load_manifest
from bench.data.synthetic import SyntheticSpec, ensure_synthetic
from bench.harness.execution import synchronize, to_device
from bench.harness.resources import available_cores
from bench.harness.throughput import BatchStream
from bench.modes import create_mode
from bench.train import make_optimizer, train_step
from model.lrn import LRN_CONVENTIONS, LocalResponseNorm
from pipelines import AugmentSpec, PipelineOptions, PipelineUnavailable, list_pipelines, pipeline_class

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BATCH = 128 if DEVICE.type == "cuda" else 16  # the paper's batch on a GPU; what a CPU steps through in about a second
STEP_ROUNDS = {"cuda": (20, 5), "cpu": (3, 1)}[DEVICE.type]  # timed and warm-up rounds of a training step
LRN_ROUNDS = {"cuda": (50, 5), "cpu": (5, 1)}[DEVICE.type]
LOADER_ROUNDS = (20, 4)  # timed and warm-up rounds of a loader batch
BENCH_CLASSES = 4
# One epoch holds every loader round (issue 13: a batch of 128 on a 128-image split timed an epoch start, a DALI pipeline build, each round)
BENCH_TRAIN_PER_CLASS = -(-BATCH * sum(LOADER_ROUNDS) // BENCH_CLASSES)


@pytest.fixture(scope="module")
def bench_split(cache_dir):
    root = ensure_synthetic(SyntheticSpec(classes=BENCH_CLASSES, train_per_class=BENCH_TRAIN_PER_CLASS, val_per_class=1, seed=2), cache_dir, progress=False)
    return load_manifest(root, cache_dir, progress=False).split("train")


@pytest.mark.parametrize("name", list_pipelines())
def test_loader_batch(benchmark, name, bench_split, cache_dir):
    try:
        cls = pipeline_class(name)
    except PipelineUnavailable as err:
        pytest.skip(str(err))
    benchmark.group = f"loader:{name}"
    # cache_dir: where FFCV keeps its .beton (converted on the first call: a one-off cost, outside the timed rounds)
    options = PipelineOptions(batch_size=BATCH, workers=min(2, available_cores()), device=str(DEVICE), seed=0, cache_dir=str(cache_dir))
    loader = cls(AugmentSpec(), options).train_loader(bench_split)
    stream = BatchStream(loader)

    def one_batch() -> None:
        next(stream)
        synchronize(DEVICE)

    try:
        benchmark.pedantic(one_batch, rounds=LOADER_ROUNDS[0], warmup_rounds=LOADER_ROUNDS[1], iterations=1)
        assert stream.epoch == 0, "a timed round started an epoch"
    finally:
        loader.close()
    benchmark.extra_info.update(device=str(DEVICE), batch_size=BATCH, workers=options.workers, images=len(bench_split))


@pytest.fixture
def one_process_group(monkeypatch):
    """The environment torchrun gives a worker, for a job of one process (a real DDP, without peers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)


# One entry per execution mode. model-parallel is emulated (both towers on one device) without
# two GPUs; data-parallel is one DDP process here: the step's DDP overhead without the
# all-reduce traffic of peers (the throughput harness measures real multi-process runs).
@pytest.mark.parametrize("mode_name", MODES)
def test_training_step(benchmark, mode_name, one_process_group):
    benchmark.group = f"train-step:{mode_name}"
    config = RunConfig.with_preset({"preset": "paper", "mode": mode_name, "progress": False, "device": str(DEVICE)})
    mode = create_mode(config)
    try:
        net = mode.place(build_model(config, 1000)).train()
        optimizer = make_optimizer(net, config)
        generator = torch.Generator().manual_seed(0)
        images, labels = to_device((torch.randn(BATCH, 3, 227, 227, generator=generator), torch.randint(0, 1000, (BATCH,), generator=generator)), mode)

        def step() -> None:
            train_step(net, optimizer, images, labels)
            mode.synchronize()

        rounds, warmup = STEP_ROUNDS
        benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup, iterations=1)
        benchmark.extra_info.update(device=str(DEVICE), batch_size=BATCH, images_per_step=BATCH, mode=mode.describe())
    finally:
        mode.close()


@pytest.mark.parametrize("convention", LRN_CONVENTIONS)
def test_lrn_forward_backward(benchmark, convention):
    benchmark.group = "lrn"
    lrn = LocalResponseNorm(convention, groups=2).to(DEVICE)
    x = torch.randn(BATCH, 96, 55, 55, device=DEVICE, requires_grad=True)

    def forward_backward() -> None:
        lrn(x).sum().backward()
        synchronize(DEVICE)

    rounds, warmup = LRN_ROUNDS
    benchmark.pedantic(forward_backward, rounds=rounds, warmup_rounds=warmup, iterations=1)
    benchmark.extra_info.update(device=str(DEVICE), shape=list(x.shape))
