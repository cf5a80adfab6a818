"""The report's tables, built from :mod:`bench.report.loading`'s frames.

Every function takes the rows of one hardware key (the caller groups by
``hardware_key``; nothing here puts two machines in one table) and returns a
:class:`~bench.report.document.Table`: ``shown`` with readable, formatted columns, ``data``
with the record's own numbers for the CSV.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import pandas as pd

from bench.harness.feeding import feeding_table
from bench.report import reference
from bench.report.document import Table, slug

PROVENANCE = ["hardware_key", "software"]


def by_hardware(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(hardware key, its rows), keys in order of first appearance."""
    if frame.empty:
        return
    for key in frame["hardware_key"].drop_duplicates():
        yield key, frame[frame["hardware_key"] == key]


def provenance_caption(rows: pd.DataFrame) -> str:
    """'Hardware: <key>. Software: <versions and commit>' for rows of one hardware key."""
    keys = rows["hardware_key"].drop_duplicates().tolist()
    if len(keys) != 1:
        raise ValueError(f"one table, one hardware key: got {keys}")  # the callers group by hardware_key
    software = rows["software"].drop_duplicates().tolist()
    return f"Hardware: {keys[0]}. Software: {' | '.join(software)}."


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def rate(row: pd.Series, prefix: str) -> str:
    """'median [q1-q3]' in images/s, or '-' when not measured."""
    median = row.get(f"{prefix}_median")
    if missing(median):
        return "-"
    return f"{median:.1f} [{row[f'{prefix}_q1']:.1f}-{row[f'{prefix}_q3']:.1f}]"


def number(value: Any, spec: str = ".3f") -> str:
    return "-" if missing(value) else format(value, spec)


def percent(value: Any) -> str:
    return "-" if missing(value) else f"{100 * value:.2f}"


def one_off_columns(rows: pd.DataFrame) -> list[str]:
    return sorted(c for c in rows.columns if c.startswith("one_off_") and rows[c].notna().any())


def with_software(shown: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Add a per-row software column when the rows do not all share one (the caption then cannot say it)."""
    if rows["software"].nunique() > 1:
        shown.insert(len(shown.columns), "software", rows["software"].to_numpy())
    return shown


def ratio(value: Any) -> str:
    return "-" if missing(value) else f"{value:.2f}x"


def throughput(rows: pd.DataFrame, key: str) -> Table:
    """Per pipeline and mode (and batch size, workers): the key figures in the page (rates, ratio to the library's
    stock loader, stall fraction, share of the CPU ceiling); every other column (quartiles, nvJPEG, one-off costs,
    resources) in the CSV."""
    one_off = one_off_columns(rows)
    shown = pd.DataFrame({
        "pipeline": rows["pipeline"],
        "mode": rows["mode_label"],
        "batch": rows["batch_size"],
        "workers": rows["workers"],
        "loader-only (img/s)": [rate(r, "loader_only") for _, r in rows.iterrows()],
        "vs stock loader": [ratio(r["stock_ratio"]) if not missing(r["stock_ratio"]) else ("skipped" if r["stock_skipped"] else "-") for _, r in rows.iterrows()],
        "end-to-end (img/s)": [rate(r, "end_to_end") for _, r in rows.iterrows()],
        "model-only (img/s)": [rate(r, "model_only") for _, r in rows.iterrows()],
        "stall fraction": rows["stall_fraction"].map(number),
        "loader / CPU ceiling": rows["loader_share_cpu"].map(lambda v: number(v, ".2f")),
        "run": rows["run_id"],
    })
    if rows["precision"].notna().any():  # issue 13's --precision: beside every figure when the records carry it
        shown.insert(2, "precision", rows["precision"].fillna("-").to_numpy())
    if (rows["status"] != "complete").any():
        shown.insert(4, "status", rows["status"].to_numpy())
    data_columns = ["run_id", "status", "pipeline", "pipeline_decoder", "mode", "mode_label", "emulated", "world_size", "devices", "batch_size", "workers", "precision",
                    "model", "dataset",
                    *[c for c in rows.columns if c.startswith(("ceiling_", "loader_only_", "end_to_end_", "model_only_", "stock_"))],
                    "stall_fraction", "loader_share_cpu", "loader_share_nvjpeg", "bound_by", "loader_cores_busy", "rate_per_core", "feed_target",
                    "machine_cpu_percent", *one_off, "sweep_id", "sweep_index", "error", *PROVENANCE]
    caption = (f"Throughput, images/s: median [first-third quartile] of the timed repeats, warm-up excluded. 'vs stock loader' = our loader-only "
               f"rate / the loader-only rate of the stock training loader of the pipeline's own library (pytorch/examples imagenet, DALI's "
               f"ResNet-50 example, ffcv-imagenet), measured in the same run on the same files (`--baselines`). Stall fraction = 1 - "
               f"end-to-end / model-only (just below 0: the two rates' noise). 'loader / CPU ceiling' = loader-only / the same files decoded "
               f"with nothing else done on every core: above 1 where the loader decodes no JPEG (FFCV's raw storage). The CSV holds every "
               f"other column: quartiles, the ceilings and nvJPEG, the stock rates, resources, one-off costs (kept out of every rate). "
               f"{provenance_caption(rows)}")
    return Table(f"throughput-{slug(key)}", caption, with_software(shown.reset_index(drop=True), rows), rows[data_columns].reset_index(drop=True))


def feeding(rows: pd.DataFrame, key: str) -> Table | None:
    """Cores of this CPU each pipeline needs to feed the model-only rate and the feed target (None without a complete point)."""
    frame = feeding_table(rows)
    if frame.empty:
        return None
    shown = pd.DataFrame({
        "pipeline": frame["pipeline"], "mode": frame["mode"], "workers measured": frame["workers_measured"].map(lambda w: ", ".join(map(str, w))),
        "loader-only at most workers (img/s)": frame["loader_only_img_s"].map(lambda v: number(v, ".1f")),
        "cores busy": frame["cores_busy"].map(lambda v: number(v, ".2f")),
        "img/s per core": frame["rate_per_core"].map(lambda v: number(v, ".1f")),
        "model-only (img/s)": frame["model_only_img_s"].map(lambda v: number(v, ".1f")),
        "cores to feed the model": frame["cores_to_feed_model"].map(lambda v: number(v, ".0f")),
        "feed target (img/s)": frame["feed_target_img_s"].map(lambda v: number(v, ".0f")),
        "cores to feed the target": frame["cores_to_feed_target"].map(lambda v: number(v, ".0f")),
    })
    caption = ("Cores to feed: the loader-only rate at the largest worker count measured, divided by the cores its processes kept busy "
               "(CPU time / wall time), gives images/s per core; the cores to feed a rate = ceil(rate / that), an estimate that holds while "
               "the loader scales linearly (see the workers plot). Targets: the model-only rate of the same run, and `--feed-target`. "
               f"{provenance_caption(rows)}")
    data = frame.merge(rows[["run_id", *PROVENANCE]], on="run_id")
    return Table(f"feeding-{slug(key)}", caption, shown, data)


def failed(rows: pd.DataFrame, key: str, harness: str) -> Table | None:
    """Points that did not complete, with their error (None when every one did)."""
    bad = rows[rows["status"] != "complete"]
    if bad.empty:
        return None
    columns = [c for c in ("run_id", "status", "pipeline", "mode_label", "batch_size", "workers", "model", "error") if c in bad.columns]
    shown = bad[columns].rename(columns={"run_id": "run", "mode_label": "mode", "batch_size": "batch"}).fillna("-").reset_index(drop=True)
    return Table(f"{harness}-failed-{slug(key)}", f"{harness} runs that did not complete, with their error. {provenance_caption(bad)}",
                 with_software(shown, bad), bad[[*columns, *PROVENANCE]].reset_index(drop=True))


def reached(row: pd.Series, activation: str, field: str, spec: str, *, why: bool = True) -> str:
    """The figure, or 'not reached' with the record's reason (``why``) instead of a number."""
    value = row[f"{activation}_{field}"]
    if missing(value):
        return f"not reached: {row[f'{activation}_reason'] or row.get('error') or 'no figure'}" if why else "not reached"
    return format(value, spec)


def relu_tanh_warning(rows: pd.DataFrame) -> str | None:
    """A warning beside the paper's 'about 6' for every run not in Figure 1's setting, naming what differs (None when every run is)."""
    lines = []
    for _, r in rows[rows["dataset_official_cifar10"].map(lambda v: v is not True)].iterrows() if "dataset_official_cifar10" in rows else rows.iterrows():
        differs = [f"data {r['dataset']} (not the official CIFAR-10" + (", generated images)" if r.get("dataset_embedded") else ")")]
        differs.append(f"network {r['model']} (Figure 1's was never published)")
        if r["batch_size"] != 128:
            differs.append(f"batch {r['batch_size']:.0f} (cuda-convnet's CIFAR runs: 128)")
        differs.append(f"a budget of {number(r['budget_epochs'], '.0f')} epochs")
        edges = [a for a in ("relu", "tanh") if r.get(f"{a}_lr_at_grid_edge") is True]
        if edges:
            differs.append(f"the chosen learning rate at the grid's edge for {' and '.join(edges)}")
        lines.append(f"{r['run_id']}: " + "; ".join(differs))
    if not lines:
        return None
    return ("**Not the paper's Figure 1.** Compare these ratios with the paper's 'about 6' only with what differs in mind. "
            + " ".join(f"Run {line}." for line in lines))


def windowed(row: pd.Series, activation: str) -> str:
    """The finer measure's figure, marked when its window limits it (only an upper bound)."""
    value = row.get(f"{activation}_iterations_to_target_window")
    if missing(value):
        return "not reached"
    return f"<= {value:.0f} (window-limited)" if row.get(f"{activation}_window_limited_window") is True else f"{value:.0f}"


def relu_tanh(rows: pd.DataFrame, key: str) -> Table:
    """Per run: the chosen rates, iterations/seconds to the target for each activation, the ratio beside the paper's six."""
    shown = pd.DataFrame({
        "run": rows["run_id"],
        "status": rows["status"],
        "model": rows["model"],
        "data": rows["dataset"],
        "mode": rows["mode_label"],
        "target": rows["target_error"].map(lambda v: number(v, ".0%")),
        "lr ReLU / tanh": [f"{number(r['relu_lr'], 'g')} / {number(r['tanh_lr'], 'g')}" for _, r in rows.iterrows()],
        "ReLU: iterations": [reached(r, "relu", "iterations_to_target", ".0f") for _, r in rows.iterrows()],
        "tanh: iterations": [reached(r, "tanh", "iterations_to_target", ".0f") for _, r in rows.iterrows()],
        "ReLU: seconds": [reached(r, "relu", "seconds_to_target", ".1f", why=False) for _, r in rows.iterrows()],
        "tanh: seconds": [reached(r, "tanh", "seconds_to_target", ".1f", why=False) for _, r in rows.iterrows()],
        "tanh / ReLU, iterations (measured)": [number(r["ratio_iterations"], ".2f") if not missing(r["ratio_iterations"]) else str(r["ratio_reason"])
                                                for _, r in rows.iterrows()],
        "tanh / ReLU, seconds (measured)": rows["ratio_seconds"].map(lambda v: number(v, ".2f")),
        "paper (iterations)": f"about {reference.RELU_TANH_RATIO:g}",
        "iterations, finer window (ReLU / tanh)": [f"{windowed(r, 'relu')} / {windowed(r, 'tanh')}" for _, r in rows.iterrows()],
        "tanh / ReLU, finer window": [number(r["ratio_window"], ".2f") if not missing(r.get("ratio_window")) else str(r.get("ratio_window_reason") or "-")
                                      for _, r in rows.iterrows()],
        "lr grid (added)": [f"{r['lr_grid']}" + (f" (ReLU +{r['relu_lr_grid_added']})" if r.get("relu_lr_grid_added") else "")
                            + (f" (tanh +{r['tanh_lr_grid_added']})" if r.get("tanh_lr_grid_added") else "") for _, r in rows.iterrows()],
        "preset; changed": [f"{r['preset']}; {r['changed']}" for _, r in rows.iterrows()],
    })
    data_columns = ["run_id", "status", "model", "model_source", "dataset", "dataset_embedded", "dataset_official_cifar10", "mode", "mode_label", "emulated",
                    "target_error", "batch_size", "iterations_per_epoch", "budget_epochs", "window_iterations", "lr_grid", "preset", "changed",
                    *[c for c in rows.columns if c.startswith(("relu_", "tanh_"))], "ratio_iterations", "ratio_epochs", "ratio_seconds",
                    "ratio_reason", "ratio_window", "ratio_window_reason", "error", *PROVENANCE]
    data_columns = [c for c in data_columns if c in rows.columns]  # records from before a field existed lack its column
    data = rows[data_columns].assign(paper_ratio_iterations=reference.RELU_TANH_RATIO).reset_index(drop=True)
    caption = (f"ReLU vs tanh: iterations and training seconds to the target training error, each activation with its own learning rate; "
               f"the paper's Figure 1 reports about {reference.RELU_TANH_RATIO:g} times fewer iterations with ReLU on CIFAR-10. {provenance_caption(rows)}")
    return Table(f"relu-tanh-{slug(key)}", caption, with_software(shown.reset_index(drop=True), rows), data)


def published_accuracy() -> Table:
    frame = reference.accuracy_frame()
    shown = pd.DataFrame({"source": frame["source"], "network": frame["network"], "data": frame["dataset"], "views": frame["views"],
                          "top-1 err (%)": frame["top1_err"].map(percent), "top-5 err (%)": frame["top5_err"].map(percent), "where": frame["where"]})
    caption = (f"Published error rates on ImageNet (1000 classes), none measured here: the paper's on {reference.PAPER_HARDWARE}, "
               f"Caffe's and torchvision's on their authors' machines.")
    return Table("accuracy-published", caption, shown, frame)


def dataset_words(row: pd.Series) -> str:
    """What a run's data is, in words, so nobody reads an embedded-data figure as an ImageNet one."""
    classes = row["classes"]
    top5 = "; top-5 error is 0 by construction with 5 classes or fewer" if classes and classes <= 5 else ""
    if row["dataset_embedded"]:
        return (f"{row['dataset']}: generated ImageNet-like images, {classes} classes (not ImageNet; chance top-1 error "
                f"{percent(1 - 1 / classes)}%{top5})") if classes else f"{row['dataset']}: generated images (not ImageNet)"
    return f"{row['dataset']}: {classes} classes" + ("" if classes == 1000 else f" (not the 1000 ImageNet classes{top5})")


def accuracy(rows: pd.DataFrame, key: str) -> Table:
    """Per run: data (in words), epochs, top-1/top-5 error, centre crop and ten views, in percent."""
    shown = pd.DataFrame({
        "run": rows["run_id"],
        "status": rows["status"],
        "data": rows.apply(dataset_words, axis=1),
        "model": rows["model"],
        "pipeline": rows["pipeline"],
        "mode": rows["mode_label"],
        "epochs (of planned)": [f"{r['epochs_run']} of {r['epochs_planned']}" + (f", at most {r['steps_per_epoch']} step(s) each" if r["steps_per_epoch"] else "")
                                for _, r in rows.iterrows()],
        "top-1 err, centre (%)": rows["top1_err_centre"].map(percent),
        "top-5 err, centre (%)": rows["top5_err_centre"].map(percent),
        "top-1 err, 10 views (%)": rows["top1_err_10crop"].map(percent),
        "top-5 err, 10 views (%)": rows["top5_err_10crop"].map(percent),
        "validation images": rows["val_samples"].map(lambda v: number(v, ".0f")),
        "preset; changed from the paper": [f"{r['preset']}; {r['changed']}" for _, r in rows.iterrows()],
    })
    data_columns = ["run_id", "status", "dataset", "dataset_embedded", "classes", "dataset_fingerprint", "model", "pipeline", "mode", "mode_label", "emulated",
                    "epochs_run", "epochs_planned", "steps_per_epoch", "batch_size", "preset", "changed", "top1_err_centre", "top5_err_centre", "top1_err_10crop",
                    "top5_err_10crop", "val_samples", "lr_schedule", "lr_drops_after_epochs", *PROVENANCE]
    caption = f"Accuracy runs: validation error after the last epoch, in percent. {provenance_caption(rows)}"
    return Table(f"accuracy-{slug(key)}", caption, with_software(shown.reset_index(drop=True), rows), rows[data_columns].reset_index(drop=True))


def lr_schedule(rows: pd.DataFrame, curves: pd.DataFrame, key: str) -> Table:
    """Per run and epoch: the learning rate taken, losses and errors, and where the rate was divided by 10."""
    mine = curves[curves["run_id"].isin(rows["run_id"])].merge(rows[["run_id", *PROVENANCE]], on="run_id")
    shown = pd.DataFrame({
        "run": mine["run_id"], "epoch": mine["epoch"], "lr": mine["lr"].map(lambda v: number(v, "g")),
        "train loss": mine["train_loss"].map(number), "train top-1 err (%)": mine["train_top1_err"].map(percent),
        "val top-1 err (%)": mine["val_top1_err"].map(percent), "val top-5 err (%)": mine["val_top5_err"].map(percent),
        "lr divided by 10 after": mine["lr_dropped_after"].map({True: "yes", False: ""}),
    })
    caption = f"Learning-rate schedule taken and per-epoch curves (validation: centre crop). {provenance_caption(rows)}"
    return Table(f"accuracy-schedule-{slug(key)}", caption, shown, mine.reset_index(drop=True))


def environment(frame: pd.DataFrame) -> Table:
    """One row per run: what ran, where, with which software."""
    shown = pd.DataFrame({
        "run": frame["run_id"], "harness": frame["harness"], "status": frame["status"],
        "commit": [f"{c[:10]}{'+dirty' if d else ''}" for c, d in zip(frame["commit"], frame["dirty"])],
        "torch": frame["torch"], "torchvision": frame["torchvision"], "DALI": frame["dali"], "FFCV": frame["ffcv"],
        "CPU": [f"{c} ({n} cores)" for c, n in zip(frame["cpu"], frame["cpu_count"])], "GPUs": frame["gpus"],
        "hardware key": frame["hardware_key"], "seed": frame["seed"], "dataset fingerprint": frame["dataset_fingerprint"],
    }).fillna("-")
    return Table("environment", "The environment of every run read: each row names its own hardware and software.", shown, frame.reset_index(drop=True))


def skipped(frame: pd.DataFrame) -> Table:
    return Table("skipped", "Files under the results directory that are not readable run records: left out of everything above.", frame, frame)
