"""Execution modes: single device, the paper's two-tower model parallelism, DDP data parallelism."""

from __future__ import annotations

from bench.config import RunConfig
from bench.modes.base import Mode
from bench.train import resolve_device


def create_mode(config: RunConfig) -> Mode:
    device = resolve_device(config.device)
    if config.mode == "single":
        from bench.modes.single import SingleDevice

        return SingleDevice(device)
    if config.mode == "model-parallel":
        from bench.modes.model_parallel import ModelParallel, tower_devices

        return ModelParallel(tower_devices(config.mp_devices, device))
    from bench.modes.data_parallel import DataParallel

    return DataParallel(device.type == "cuda", batch_scope=config.batch_scope)


__all__ = ["Mode", "create_mode"]
