"""Run records: one JSON file per run, schema-versioned, written atomically.

File names carry a timestamp and a random suffix, so any number of runs may write into one
results directory at once without losing a record.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_json

SCHEMA_VERSION = 1
RECORDS_DIR = "records"


def new_run_id(harness: str, pipeline: str, mode: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return f"{stamp}-{harness}-{pipeline}-{mode}-{uuid.uuid4().hex[:8]}"


def record_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / RECORDS_DIR / f"{run_id}.json"


def ended_by(err: BaseException) -> tuple[str, str | None]:
    """A run's ``status`` and ``error`` for a record when ``err`` ended it: Ctrl-C is ``interrupted``, anything else ``failed``."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", None
    return "failed", f"{type(err).__name__}: {err}"


def write_record(results_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (which must carry ``run_id``) atomically; returns its path."""
    record = {"schema_version": SCHEMA_VERSION, **record}
    path = record_path(results_dir, record["run_id"])
    atomic_write_json(path, record)
    return path


def read_record(path: str | Path) -> dict[str, Any]:
    """Read one record; ``ValueError`` naming the file if it is not a record this version understands."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable JSON record ({err})") from None
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a schema-version-{SCHEMA_VERSION} run record")
    return record
