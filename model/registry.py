"""A small strict model registry, in the manner of timm's ``create_model``.

Registering a name twice raises; an unknown name raises ``ValueError`` listing
the valid ones; ``list_models()`` is sorted.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a keyword-only model builder under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword arguments."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from: {', '.join(list_models())}") from None
    return builder(**kwargs)
