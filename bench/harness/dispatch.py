"""From a config to the harness, pipeline and mode it names, with clear errors for what is missing."""

from __future__ import annotations

from pathlib import Path

from bench.config import RunConfig
from bench.errors import UserError
from pipelines import PipelineUnavailable, pipeline_class

AVAILABLE_HARNESSES = ("accuracy",)
AVAILABLE_MODES = ("single",)


def run(config: RunConfig) -> Path:
    try:
        pipeline_class(config.pipeline)
    except (ValueError, PipelineUnavailable) as err:
        raise UserError(f"--pipeline: {err}") from None
    if config.mode not in AVAILABLE_MODES:
        raise UserError(f"--mode {config.mode} is not available yet; available: {', '.join(AVAILABLE_MODES)}")
    if config.harness not in AVAILABLE_HARNESSES:
        raise UserError(f"--harness {config.harness} is not available yet; available: {', '.join(AVAILABLE_HARNESSES)}")
    from bench.harness import accuracy

    return accuracy.run(config)
