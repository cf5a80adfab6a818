"""How many cores of this CPU it takes to feed the model: from the loader-only rate and the
CPU time the loader used while it ran (``resources.cpu_cores_busy`` of the loader-only phase),
the rate one busy core delivers, and the cores a target rate needs at that rate.

Rate per core is measured, not assumed: a worker count that does not scale (a shared machine,
a GIL-bound main process) shows as a lower rate per busy core. The cores-to-feed figure is
linear in it: ``ceil(target / rate_per_core)``, an estimate that holds while the loader keeps
scaling linearly (the workers sweep's plot shows how far it does).
"""

from __future__ import annotations

import math

import pandas as pd


def rate_per_core(loader_only_rate: float | None, cores_busy: float | None) -> float | None:
    """Images/s per busy core during the loader-only phase (None when either is missing or no core was busy)."""
    if loader_only_rate is None or cores_busy is None or not cores_busy > 0 or math.isnan(loader_only_rate):
        return None
    return loader_only_rate / cores_busy


def cores_to_feed(target: float | None, per_core: float | None) -> int | None:
    """Whole cores needed to load ``target`` images/s at ``per_core`` images/s per core (None when unknown)."""
    if target is None or per_core is None or not target > 0 or not per_core > 0 or math.isnan(target) or math.isnan(per_core):
        return None
    return math.ceil(target / per_core)


def feeding_table(rows: pd.DataFrame, feed_target: float | None = None) -> pd.DataFrame:
    """Per pipeline and mode (rows of one hardware key, complete throughput points): the point with the most
    workers, its rate per busy core, the model-only rate of that run, and the cores to feed it and ``feed_target``.

    ``feed_target`` defaults to the largest ``feed_target`` the rows' configs carry (0: none)."""
    done = rows[(rows["status"] == "complete") & rows["rate_per_core"].notna()]
    out = []
    for (pipeline, mode), group in done.groupby(["pipeline", "mode_label"], sort=True):
        top = group.sort_values(["workers", "loader_only_median"]).iloc[-1]
        target = feed_target if feed_target is not None else (group["feed_target"].max() or None)
        out.append({
            "pipeline": pipeline, "mode": mode, "workers": int(top["workers"]), "workers_measured": sorted(int(w) for w in group["workers"].unique()),
            "loader_only_img_s": top["loader_only_median"], "cores_busy": top["loader_cores_busy"], "rate_per_core": top["rate_per_core"],
            "model_only_img_s": top["model_only_median"], "cores_to_feed_model": cores_to_feed(top["model_only_median"], top["rate_per_core"]),
            "feed_target_img_s": target, "cores_to_feed_target": cores_to_feed(target, top["rate_per_core"]), "run_id": top["run_id"],
        })
    return pd.DataFrame(out)
