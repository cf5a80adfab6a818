"""The scale simulation's record (harness ``scale``) and its printed projection."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from bench.provenance import provenance
from bench.records import new_run_id, write_record


def unit(cost: str) -> str:
    return "bytes" if cost.endswith("bytes") else "s"


def projection_table(projection: list[dict]) -> pd.DataFrame:
    """One row per cost, one column per core count, in readable units (s, min or MiB)."""
    frame = pd.DataFrame(projection).pivot(index="cost", columns="cores", values="value")
    frame.columns = [f"{c} cores" for c in frame.columns]
    return frame


def readable(cost: str, value: float) -> str:
    if unit(cost) == "bytes":
        return f"{value / 2**20:,.0f} MiB"
    return f"{value / 60:,.1f} min" if value >= 120 else f"{value:,.1f} s"


def print_projection(projection: list[dict], target: int) -> None:
    table = projection_table(projection)
    shown = table.apply(lambda col: [readable(cost, v) for cost, v in zip(table.index, col)])
    print(f"projected start-up costs at {target:,} images (linear fit, or the mean for costs that do not grow; parallel costs divided over the cores):")
    print(shown.to_string())


def write_scale_record(out: Path, *, started: float, config: dict, sizes: list[int], measured: list[dict], fits: list[dict],
                       projection: list[dict], calibration: dict, tree_seconds: list[float], load: dict) -> Path:
    record = {
        "run_id": new_run_id("scale", "all", "single"),
        "harness": "scale",
        "status": "complete",
        "started": started,
        "wall_seconds": time.time() - started,
        "config": config,
        "sizes": sizes,
        "measured": measured,
        "tree_seconds": tree_seconds,
        "fits": fits,
        "projection": projection,
        "decode_calibration": calibration,
        "load_average": load,
        "provenance": provenance(seed=0),
    }
    return write_record(out, record)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
