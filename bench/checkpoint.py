"""Checkpoints: written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_path
from bench.errors import UserError

CHECKPOINTS_DIR = "checkpoints"


def checkpoint_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / CHECKPOINTS_DIR / f"{run_id}.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Replace ``path`` with ``state`` in one step: a reader sees the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means this file is not a checkpoint we wrote
        raise UserError(f"--resume: {path} is not a readable checkpoint ({str(err).splitlines()[0]})") from None
