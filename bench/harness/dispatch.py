"""From a config to the harness, pipeline and mode it names, with clear errors for what is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from bench.config import RunConfig
from bench.errors import UserError
from bench.train import resolve_device
from pipelines import PipelineUnavailable, pipeline_class

AVAILABLE_HARNESSES = ("accuracy",)


def check(config: RunConfig) -> None:
    """Everything that can be checked before any work starts (and before torchrun starts processes)."""
    try:
        pipeline_class(config.pipeline)
    except (ValueError, PipelineUnavailable) as err:
        raise UserError(f"--pipeline: {err}") from None
    if config.harness not in AVAILABLE_HARNESSES:
        raise UserError(f"--harness {config.harness} is not available yet; available: {', '.join(AVAILABLE_HARNESSES)}")
    if config.mode == "model-parallel" and config.model != "alexnet":
        raise UserError("--mode model-parallel splits the paper's AlexNet into its two towers: use --model alexnet")
    device = resolve_device(config.device)
    if config.mode == "data-parallel" and device.type == "cuda" and processes(config) > torch.cuda.device_count():
        raise UserError(f"--nproc {processes(config)}: only {torch.cuda.device_count()} GPU(s) visible (use --device cpu for gloo processes)")


def processes(config: RunConfig) -> int:
    if config.nproc != "auto":
        return int(config.nproc)
    device = resolve_device(config.device)
    return torch.cuda.device_count() if device.type == "cuda" else 2


def run(config: RunConfig, argv: Sequence[str] = ()) -> Path | None:
    """Run the harness the config names; for data-parallel outside torchrun, start torchrun with ``argv``."""
    check(config)
    if config.mode == "data-parallel":
        from bench.modes.data_parallel import under_torchrun

        if not under_torchrun():
            from bench.modes.launch import launch

            launch(argv, processes(config))
            return None
    from bench.harness import accuracy

    return accuracy.run(config)
