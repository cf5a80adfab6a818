"""From a config to the harness, pipeline and mode it names, with clear errors for what is missing."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

import torch

from bench.config import RunConfig
from bench.console import notice
from bench.errors import UserError
from bench.modes import Mode, create_mode
from bench.train import resolve_device
from pipelines import PipelineUnavailable, pipeline_class

# The harnesses that read images through an input pipeline (relu-tanh holds its small images in memory).
PIPELINE_HARNESSES = ("accuracy", "throughput")
# Networks for 32x32 images, which the ImageNet pipelines do not produce.
SMALL_IMAGE_MODELS = ("convnet4", "conv_local_11pct", "conv_local_13pct")


def check_model(config: RunConfig) -> None:
    import model

    if config.model not in model.list_models():
        raise UserError(f"--model {config.model!r} is not one of: {', '.join(model.list_models())}")
    if config.harness in PIPELINE_HARNESSES and config.model in SMALL_IMAGE_MODELS:
        raise UserError(f"--model {config.model} takes 32x32 images; use it with --harness relu-tanh")
    if config.mode == "model-parallel" and config.model != "alexnet":
        raise UserError("--mode model-parallel splits the paper's AlexNet into its two towers: use --model alexnet")


def check_writable(path: str | Path, flag: str) -> None:
    """A UserError unless ``path`` is a directory this process can write in, or one it can create."""
    given = Path(path).expanduser()
    existing = given
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "exists" if existing == given else f"is under {existing}, which exists"
        raise UserError(f"{flag} {path}: {where} and is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")


def check_outputs(config: RunConfig) -> None:
    """Before any work: the results directory (and its records/ and checkpoints/) and the cache can be written."""
    from bench.checkpoint import CHECKPOINTS_DIR
    from bench.records import RECORDS_DIR

    for where in (config.out, Path(config.out) / RECORDS_DIR, Path(config.out) / CHECKPOINTS_DIR):
        check_writable(where, "--out")
    check_writable(config.cache_dir, "--cache-dir")


def check_data_parallel(config: RunConfig) -> None:
    """Before torchrun starts anything: the global batch splits over the processes."""
    if config.mode != "data-parallel" or config.batch_scope != "global":
        return
    n = processes(config)
    for batch in config.sweep_axes()["batch_size"] if config.sweep_axes() else [config.batch_size]:
        if batch % n:
            raise UserError(f"--batch-size {batch} does not split evenly over {n} processes (--nproc): "
                            f"give a multiple of {n}, or --batch-scope per-rank")


def oversubscription(config: RunConfig, cores: int | None = None) -> str | None:
    """A warning when a data-parallel run on the CPU starts more processes than there are cores, else None."""
    cores = cores or os.cpu_count() or 1
    n = processes(config)
    if config.mode != "data-parallel" or resolve_device(config.device).type != "cpu" or n <= cores:
        return None
    return (f"warning: --nproc {n} on {cores} CPU core(s): the processes take turns on the cores, "
            "so times and images/s are lower than with one process per core")


def check(config: RunConfig) -> None:
    """Everything that can be checked before any work starts (and before torchrun starts processes)."""
    check_outputs(config)
    if config.harness in PIPELINE_HARNESSES and config.sweep_axes() is None:
        try:
            pipeline_class(config.pipeline)
        except (ValueError, PipelineUnavailable) as err:
            raise UserError(f"--pipeline: {err}") from None
    check_model(config)
    device = resolve_device(config.device)
    if config.mode == "data-parallel" and device.type == "cuda" and processes(config) > torch.cuda.device_count():
        raise UserError(f"--nproc {processes(config)}: only {torch.cuda.device_count()} GPU(s) visible (use --device cpu for gloo processes)")
    check_data_parallel(config)


def processes(config: RunConfig) -> int:
    if config.nproc != "auto":
        return int(config.nproc)
    device = resolve_device(config.device)
    return torch.cuda.device_count() if device.type == "cuda" else 2


def for_this_process(config: RunConfig, mode: Mode) -> RunConfig:
    """Only the main process of a multi-process run shows progress."""
    return config if mode.is_main else dataclasses.replace(config, progress=False)


def run(config: RunConfig, argv: Sequence[str] = ()) -> Path | list[Path] | None:
    """Run the harness the config names; for data-parallel outside torchrun, start torchrun with ``argv``."""
    check(config)
    if config.mode == "data-parallel":
        from bench.modes.data_parallel import under_torchrun

        if not under_torchrun():
            from bench.modes.launch import launch

            warning = oversubscription(config)
            if warning:
                print(warning, file=sys.stderr, flush=True)
            # issue 13: the manifest (every file checked: hours on a first ImageNet run) and the colour
            # statistics are made here, before any process group starts, not by rank 0 while the
            # others wait at a barrier with a 600 s limit; the ranks then read them from the cache.
            if config.harness in PIPELINE_HARNESSES:
                from bench.data.source import open_dataset

                open_dataset(config)
            launch(argv, processes(config))
            return None
    if config.harness == "throughput":
        from bench.harness import throughput as harness
    elif config.harness == "relu-tanh":
        from bench.harness import relu_tanh as harness
    else:
        from bench.harness import accuracy as harness
    mode = create_mode(config)
    try:
        described = mode.describe()
        if described.get("emulated"):
            notice(mode.is_main, f"note: {config.mode} is emulated here: {described.get('note', '')}")
        return harness.run(for_this_process(config, mode), mode)
    finally:
        mode.close()
