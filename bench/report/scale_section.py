"""The report's section "At ImageNet scale": the scale simulation's records (``python -m bench.scale``).

Per record: the measured costs against N with each cost's fit (a plot), the fits' growth, and the
projection to ImageNet per core count (a table). One record, one machine: its hardware key
titles every table and plot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.report import plots, tables
from bench.report.document import Figure, Section, Table, slug
from bench.report.loading import Results, common_columns
from bench.scale.record import readable, unit


def scale_row(record: dict, file: str) -> dict[str, Any]:
    row = common_columns(record, file)
    row["sizes"] = ", ".join(str(n) for n in record["sizes"])
    row["target"] = record["config"]["target"]
    row["wall_seconds"] = record.get("wall_seconds")
    return row


def projection_table(record: dict, row: pd.Series) -> Table:
    frame = pd.DataFrame(record["projection"])
    fits = {f["cost"]: f for f in record["fits"]}
    wide = frame.pivot(index="cost", columns="cores", values="value")
    shown = pd.DataFrame({
        "cost": wide.index,
        "growth (exponent)": [f"{fits[c]['growth']} ({fits[c]['exponent']:.2f})" if fits[c]["exponent"] is not None else fits[c]["growth"]
                              for c in wide.index],
        **{f"{cores} cores": [readable(c, v) for c, v in zip(wide.index, wide[cores])] for cores in wide.columns},
    })
    data = frame.assign(unit=[unit(c) for c in frame["cost"]], hardware_key=row["hardware_key"], software=row["software"], run_id=row["run_id"])
    caption = (f"Projected start-up costs at {record['config']['target']:,} images, from sizes {row['sizes']} measured on this machine "
               f"({record['config']['workers']} processes). {tables.provenance_caption(pd.DataFrame([row]))}")
    return Table(f"scale-{slug(row['run_id'])}", caption, shown, data)


def curve_figure(record: dict, row: pd.Series) -> Figure:
    sizes = np.asarray(record["sizes"], dtype=float)
    seconds = [f for f in record["fits"] if unit(f["cost"]) == "s"]
    fig = plots.new_figure(8, 4.5)
    ax = fig.add_subplot()
    target = record["config"]["target"]
    grid = np.geomspace(sizes.min(), target, 50)
    for f in seconds:
        measured = [m[f["cost"]] for m in record["measured"]]
        line = ax.plot(sizes, measured, "o", label=f"{f['cost']} ({f['growth']})")[0]
        fitted = np.full_like(grid, f["mean"]) if f["growth"] == "constant" else np.maximum(f["intercept"] + f["slope"] * grid, 1e-3)
        ax.plot(grid, fitted, "--", color=line.get_color(), linewidth=0.8)
    ax.axvline(target, color="0.5", linewidth=0.8)
    ax.set(xscale="log", yscale="log", xlabel="training images N", ylabel="seconds (on this machine's cores)")
    ax.legend(fontsize=7, ncol=2)
    plots.label(fig, "Start-up costs against N: measured (points), fitted (dashed), ImageNet (grey line)", pd.DataFrame([row]))
    return Figure(f"scale-{slug(row['run_id'])}", f"Run {row['run_id']}: each start-up cost in seconds against N, {row['hardware_key']}.",
                  plots.png(fig))


def at_imagenet_scale(results: Results) -> list[Section]:
    frame = results.scale
    if frame.empty:
        return []
    sections = [Section("At ImageNet scale", blocks=[
        "From `python -m bench.scale`: a synthetic ImageFolder (1,000 classes, small JPEGs) at several sizes N, every start-up cost measured "
        "(the manifest's walk, check and reload, its size on disk and in memory, each pipeline's construction to first batch with FFCV's "
        "conversion and compile, a loader worker's private memory), fitted against N and projected to ImageNet. Parallel costs are divided "
        "over the cores as if each were this machine's (an optimistic bound); the check is scaled by the measured decode cost of an "
        "ImageNet-sized JPEG. Projections, not measurements."])]
    for key, rows in tables.by_hardware(frame):
        section = Section(key, level=3)
        for _, row in rows.iterrows():
            record = results.records[row["run_id"]]
            section.blocks += [projection_table(record, row), curve_figure(record, row)]
        sections.append(section)
    return sections
