"""Pipelines chosen by name. Backends are imported only when used, so a missing optional
library affects only the pipeline that needs it, with a message that says how to install it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from pipelines.base import Pipeline, PipelineOptions
from pipelines.spec import AugmentSpec


class PipelineUnavailable(RuntimeError):
    """A registered pipeline whose library cannot be imported here."""


@dataclass(frozen=True)
class PipelineEntry:
    name: str
    module: str  # imported on first use
    cls: str
    install: str  # the command that makes it available
    summary: str


_ENTRIES: dict[str, PipelineEntry] = {}


def register_pipeline(entry: PipelineEntry) -> None:
    if entry.name in _ENTRIES:
        raise ValueError(f"pipeline {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry


register_pipeline(
    PipelineEntry(
        name="torchvision",
        module="pipelines.torchvision_pipeline",
        cls="TorchvisionPipeline",
        install="pip install -e .",
        summary="torch DataLoader with worker processes, torchvision.io decode, the paper's augmentation",
    )
)
register_pipeline(
    PipelineEntry(
        name="dali",
        module="pipelines.dali_pipeline",
        cls="DaliPipeline",
        install="pip install -e '.[dali]'",
        summary="NVIDIA DALI: nvJPEG decode and augmentation on the GPU (mixed), or the same graph on the CPU",
    )
)
register_pipeline(
    PipelineEntry(
        name="ffcv",
        module="pipelines.ffcv_pipeline",
        cls="FfcvPipeline",
        install="apt-get install libopencv-dev libturbojpeg0-dev pkg-config, then pip install -e '.[ffcv]'",
        summary="FFCV: .beton file (JPEG or raw), compiled multithreaded loader, the paper's augmentation as FFCV operations",
    )
)


def list_pipelines() -> list[str]:
    """Every registered pipeline name, sorted (installed or not)."""
    return sorted(_ENTRIES)


def entry(name: str) -> PipelineEntry:
    try:
        return _ENTRIES[name]
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r}; choose from: {', '.join(list_pipelines())}") from None


def pipeline_class(name: str) -> type[Pipeline]:
    """Import and return the class of pipeline ``name``; ``PipelineUnavailable`` with the install hint if it cannot be."""
    e = entry(name)
    threads = torch.get_num_threads()  # some backends (FFCV) change it on import
    try:
        module = importlib.import_module(e.module)
    except (ImportError, OSError) as err:
        raise PipelineUnavailable(f"pipeline {name!r} is not available ({err}); install it with: {e.install}") from None
    finally:
        torch.set_num_threads(threads)
    return getattr(module, e.cls)


def available_pipelines() -> list[str]:
    """The registered pipelines whose libraries import here, sorted."""
    names = []
    for name in list_pipelines():
        try:
            pipeline_class(name)
        except PipelineUnavailable:
            continue
        names.append(name)
    return names


def create_pipeline(name: str, spec: AugmentSpec, options: PipelineOptions) -> Pipeline:
    """Build pipeline ``name`` for ``spec`` and ``options``."""
    return pipeline_class(name)(spec, options)
