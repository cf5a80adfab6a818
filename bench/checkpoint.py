"""Checkpoints: written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import json
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


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file format is a zip archive


def file_kind(path: str | Path) -> str:
    """What a file given to --resume, --rerun or --config is, from its content: 'checkpoint', 'record', 'config' or 'other'."""
    from bench.config import RunConfig

    try:
        data = Path(path).read_bytes()
    except OSError:
        return "other"
    if data.startswith(ZIP_MAGIC):
        return "checkpoint"
    try:
        text = data.decode()
        try:
            content = json.loads(text)
        except ValueError:
            import yaml

            content = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - neither JSON nor YAML text
        return "other"
    if not isinstance(content, dict):
        return "other"
    if "schema_version" in content and "run_id" in content:
        return "record"
    names = {f.name for f in RunConfig.__dataclass_fields__.values()}
    if content and all(str(key).replace("-", "_") in names for key in content):
        return "config"
    return "other"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    kind = file_kind(path)
    if kind == "record":
        raise UserError(f"--resume: {path} is a run record: use --rerun {path}")
    if kind == "config":
        raise UserError(f"--resume: {path} is a config file: use --config {path}")
    if kind != "checkpoint":
        raise UserError(f"--resume: {path} is not a readable checkpoint (not a file torch.save wrote)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means this file is not a checkpoint we wrote
        # torch's own message would advise loading with weights_only=False: never do that with a file from elsewhere
        raise UserError(f"--resume: {path} is not a checkpoint this benchmark wrote (it holds more than tensors and plain values, "
                        "or is damaged)") from None
    if not isinstance(state, dict):
        raise UserError(f"--resume: {path} is not a checkpoint this benchmark wrote")
    return state
