"""Build the parts of a run from its config: augmentation spec, pipeline options, model."""

from __future__ import annotations

import torch

import model as models
from bench.config import RunConfig
from bench.data.source import Dataset
from pipelines import AugmentSpec, PipelineOptions


def augment_spec(config: RunConfig, dataset: Dataset) -> AugmentSpec:
    return AugmentSpec(crop=config.crop, flip_prob=config.flip_prob, lighting_sigma=config.lighting_sigma, colour=dataset.colour)


def pipeline_options(config: RunConfig, device: torch.device, *, rank: int = 0, world_size: int = 1, batch_size: int | None = None) -> PipelineOptions:
    """Options for this process's pipeline; ``batch_size`` is per process (default: the config's)."""
    return PipelineOptions(
        batch_size=batch_size or config.batch_size,
        workers=config.workers,
        device=str(device),
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        cache_dir=config.cache_dir,
        extra=config.pipeline_extra(),
    )


def build_model(config: RunConfig, num_classes: int, **overrides) -> torch.nn.Module:
    """The network the config names, initialised from ``config.seed``; ``overrides`` go to its builder (e.g. ``dropout=0.0``)."""
    torch.manual_seed(config.seed)
    kwargs = dict(num_classes=num_classes, activation=config.activation)
    if config.model == "alexnet":
        kwargs.update(lrn=config.lrn, input_size=config.crop, init=config.init)
    return models.create_model(config.model, **{**kwargs, **overrides})
