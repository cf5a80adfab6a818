"""Run records: one JSON file per run, schema-versioned, written atomically.

File names carry a timestamp and a random suffix, so any number of runs may write into one
results directory at once without losing a record.
"""

from __future__ import annotations

import json
import math
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


def strict_json(obj: Any, where: str, non_finite: dict[str, str]) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, noted in ``non_finite`` under its path (strict JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        non_finite[where] = str(obj)
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v, f"{where}.{k}" if where else str(k), non_finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v, f"{where}[{i}]", non_finite) for i, v in enumerate(obj)]
    return obj


def write_record(results_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (which must carry ``run_id``) atomically as strict JSON; returns its path.

    A NaN or infinite value is written as null and named in ``non_finite`` (its path: ``nan``, ``inf`` or ``-inf``).
    """
    non_finite: dict[str, str] = {}
    record = strict_json({"schema_version": SCHEMA_VERSION, **record}, "", non_finite)
    if non_finite:
        record["non_finite"] = non_finite
    path = record_path(results_dir, record["run_id"])
    atomic_write_json(path, record, allow_nan=False)
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
