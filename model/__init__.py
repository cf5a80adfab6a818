"""The networks. Nothing here knows about pipelines or harnesses."""

from model import alexnet, alexnet_torchvision, conv_local, convnet4  # noqa: F401  (register the builders)
from model.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
