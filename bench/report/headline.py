"""The report's opening sentences, computed from the throughput records alone: per hardware key,
the fastest pipeline per mode, each pipeline against its library's stock loader, the stall
fraction, and the cores it takes to feed the model (issue 14)."""

from __future__ import annotations

import pandas as pd

from bench.harness.feeding import feeding_table


def _best(rows: pd.DataFrame, column: str) -> pd.Series | None:
    done = rows[rows[column].notna()]
    return None if done.empty else done.loc[done[column].idxmax()]


def sentences(frame: pd.DataFrame) -> list[str]:
    """One paragraph per hardware key with complete throughput points; none without."""
    if frame.empty:
        return []
    out = []
    done = frame[frame["status"] == "complete"]
    for key in done["hardware_key"].drop_duplicates():
        rows = done[done["hardware_key"] == key]
        parts = []
        for mode, group in rows.groupby("mode_label", sort=True):
            loader, e2e = _best(group, "loader_only_median"), _best(group, "end_to_end_median")
            if loader is not None:
                parts.append(f"in {mode}, the fastest loader is **{loader['pipeline']}** at {loader['loader_only_median']:.0f} img/s loader-only "
                             f"(batch {loader['batch_size']}, {loader['workers']} workers)"
                             + (f", and the fastest end to end **{e2e['pipeline']}** at {e2e['end_to_end_median']:.1f} img/s with a stall fraction of "
                                f"{e2e['stall_fraction']:.2f}" if e2e is not None else ""))
        ratios = rows[rows["stock_ratio"].notna()]
        if not ratios.empty:
            per = ratios.groupby("pipeline")["stock_ratio"].median()
            parts.append("against the stock loader of its own library (same run, same files), "
                         + ", ".join(f"{name} runs at {value:.2f}x" for name, value in per.items()))
        feeding = feeding_table(rows)
        if not feeding.empty:
            feed = []
            for _, r in feeding.iterrows():
                text = f"{r['pipeline']} {r['rate_per_core']:.0f} img/s per core"
                if pd.notna(r["cores_to_feed_model"]):
                    text += f", {int(r['cores_to_feed_model'])} core(s) to feed the model-only {r['model_only_img_s']:.0f} img/s"
                if pd.notna(r["cores_to_feed_target"]):
                    text += f", {int(r['cores_to_feed_target'])} to feed {r['feed_target_img_s']:.0f} img/s"
                feed.append(text)
            parts.append("cores to feed: " + "; ".join(feed))
        if parts:
            out.append(f"**{key}**: " + "; ".join(parts) + ".")
    return out
