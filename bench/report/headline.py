"""The report's opening sentences, computed from the throughput records alone: per hardware key,
four short sentences (issue 14):

1. the fastest loader, per mode where the winner differs;
2. each pipeline against its library's stock loader (same run, same files);
3. the fastest end-to-end run with its stall fraction, and the most stalled one;
4. the cores of this CPU each pipeline needs to feed the target rate and the model.
"""

from __future__ import annotations

import pandas as pd

from bench.harness.feeding import feeding_table


def _best(rows: pd.DataFrame, column: str) -> pd.Series | None:
    done = rows[rows[column].notna()]
    return None if done.empty else done.loc[done[column].idxmax()]


def _mode(row: pd.Series) -> str:
    """The short mode name, '(emulated)' kept: the full label is in every table."""
    return f"{row['mode']} (emulated)" if row.get("emulated") else str(row["mode"])


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def fastest_loader(rows: pd.DataFrame) -> str | None:
    best = [(mode, b) for mode, g in rows.groupby("mode", sort=True) if (b := _best(g, "loader_only_median")) is not None]
    if not best:
        return None
    winners = {b["pipeline"] for _, b in best}
    rates = _join([f"{b['loader_only_median']:.0f} img/s in {_mode(b)}" for _, b in best])
    if len(winners) == 1:
        return f"The fastest loader is **{winners.pop()}**: {rates} (loader only)."
    return "The fastest loader per mode: " + _join([f"**{b['pipeline']}** in {_mode(b)} ({b['loader_only_median']:.0f} img/s)" for _, b in best]) + "."


def against_stock(rows: pd.DataFrame) -> str | None:
    """Each pipeline's ratio at its point with the most workers (the README's protocol: as many workers as cores)."""
    ratios = rows[rows["stock_ratio"].notna()]
    if ratios.empty:
        return None
    parts = []
    for pipeline, g in ratios.groupby("pipeline", sort=True):
        top = g.sort_values(["workers", "stock_ratio"]).iloc[-1]
        parts.append(f"{pipeline} {top['stock_ratio']:.2f}x")
    return f"Against the stock loader of its own library, in the same run on the same files: {_join(parts)}."


def end_to_end(rows: pd.DataFrame) -> str | None:
    best = _best(rows, "end_to_end_median")
    if best is None:
        return None
    text = (f"End to end, the fastest is **{best['pipeline']}** in {_mode(best)} at {best['end_to_end_median']:.1f} img/s, "
            f"stall fraction {best['stall_fraction']:.2f}")
    stalled = _best(rows, "stall_fraction")
    if stalled is not None and stalled["run_id"] != best["run_id"]:
        text += f"; the most stalled is {stalled['pipeline']} in {_mode(stalled)} at {stalled['stall_fraction']:.2f}"
    return text + "."


def cores_needed(rows: pd.DataFrame) -> str | None:
    """From single mode where it was swept (its feeding rows), else from every mode's rows."""
    feeding = feeding_table(rows)
    if feeding.empty:
        return None
    single = feeding[feeding["mode"] == "single"]
    feeding = single if not single.empty else feeding.drop_duplicates("pipeline")
    target = feeding["feed_target_img_s"].dropna()
    parts, model = [], []
    for _, r in feeding.sort_values("rate_per_core", ascending=False).iterrows():
        if pd.notna(r["cores_to_feed_target"]):
            parts.append(f"{r['pipeline']} {int(r['cores_to_feed_target'])}")
        if pd.notna(r["cores_to_feed_model"]):
            model.append(f"{r['pipeline']} {int(r['cores_to_feed_model'])}")
    per_core = _join([f"{r['rate_per_core']:.0f}" for _, r in feeding.sort_values("rate_per_core", ascending=False).iterrows()])
    text = ""
    if parts and not target.empty:
        text = f"Cores of this CPU to feed {target.max():.0f} img/s: {_join(parts)} (at {per_core} img/s per busy core)"
    if model:
        rate = feeding["model_only_img_s"].dropna()
        counts = {m.rsplit(" ", 1)[1] for m in model}
        takes = f"{counts.pop()} core(s) with any of them" if len(counts) == 1 and len(model) > 1 else _join(model)
        clause = f"the model-only rate here ({rate.max():.0f} img/s) takes {takes}"
        text = f"{text}; {clause}" if text else f"Cores of this CPU to feed {clause}"
    return text + "." if text else None


def sentences(frame: pd.DataFrame) -> list[str]:
    """One short paragraph per hardware key with complete throughput points; none without."""
    if frame.empty:
        return []
    out = []
    done = frame[frame["status"] == "complete"]
    for key in done["hardware_key"].drop_duplicates():
        rows = done[done["hardware_key"] == key]
        parts = [s for s in (fastest_loader(rows), against_stock(rows), end_to_end(rows), cores_needed(rows)) if s]
        if parts:
            out.append(f"**{key}**: " + " ".join(parts))
    return out
