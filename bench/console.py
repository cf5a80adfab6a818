"""What a run prints: progress lines, only when the config says so (only the main process of a multi-process run does)."""

from __future__ import annotations

from bench.config import RunConfig


def say(config: RunConfig, message: str) -> None:
    if config.progress:
        print(message, flush=True)
