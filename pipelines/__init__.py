"""Interchangeable input pipelines behind one registry. Nothing here knows about the model."""

from pipelines.base import Loader, Pipeline, PipelineOptions, Split
from pipelines.registry import (
    PipelineUnavailable,
    available_pipelines,
    create_pipeline,
    list_pipelines,
    pipeline_class,
)
from pipelines.spec import AugmentSpec, ColourStats

__all__ = [
    "AugmentSpec",
    "ColourStats",
    "Loader",
    "Pipeline",
    "PipelineOptions",
    "PipelineUnavailable",
    "Split",
    "available_pipelines",
    "create_pipeline",
    "list_pipelines",
    "pipeline_class",
]
