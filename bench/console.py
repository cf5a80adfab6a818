"""What a run prints: progress lines only when the config says so (``say``), and the few lines a user must see
(bad files left out, an emulated mode) always (``notice``); in a multi-process run only the main process prints."""

from __future__ import annotations

from bench.config import RunConfig


def say(config: RunConfig, message: str) -> None:
    if config.progress:
        print(message, flush=True)


def notice(is_main: bool, message: str) -> None:
    """A line printed whatever ``--no-progress`` says: what was left out or is not what it seems."""
    if is_main:
        print(message, flush=True)
