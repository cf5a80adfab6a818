"""From a config to the harness, pipeline and mode it names, with clear errors for what is missing."""

from __future__ import annotations

from pathlib import Path

from bench.config import RunConfig
from bench.errors import UserError
from pipelines import PipelineUnavailable, pipeline_class

AVAILABLE_HARNESSES = ("accuracy", "throughput", "relu-tanh")
AVAILABLE_MODES = ("single",)
# The harnesses that read images through an input pipeline (relu-tanh holds its small images in memory).
PIPELINE_HARNESSES = ("accuracy", "throughput")
# Networks for 32x32 images, which the ImageNet pipelines do not produce.
SMALL_IMAGE_MODELS = ("convnet4",)


def check_model(config: RunConfig) -> None:
    import model

    if config.model not in model.list_models():
        raise UserError(f"--model {config.model!r} is not one of: {', '.join(model.list_models())}")
    if config.harness in PIPELINE_HARNESSES and config.model in SMALL_IMAGE_MODELS:
        raise UserError(f"--model {config.model} takes 32x32 images; use it with --harness relu-tanh")


def run(config: RunConfig) -> Path | list[Path]:
    if config.harness in PIPELINE_HARNESSES and config.sweep_axes() is None:
        try:
            pipeline_class(config.pipeline)
        except (ValueError, PipelineUnavailable) as err:
            raise UserError(f"--pipeline: {err}") from None
    if config.mode not in AVAILABLE_MODES:
        raise UserError(f"--mode {config.mode} is not available yet; available: {', '.join(AVAILABLE_MODES)}")
    if config.harness not in AVAILABLE_HARNESSES:
        raise UserError(f"--harness {config.harness} is not available yet; available: {', '.join(AVAILABLE_HARNESSES)}")
    check_model(config)
    if config.harness == "throughput":
        from bench.harness import throughput

        return throughput.run(config)
    if config.harness == "relu-tanh":
        from bench.harness import relu_tanh

        return relu_tanh.run(config)
    from bench.harness import accuracy

    return accuracy.run(config)
