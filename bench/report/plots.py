"""The report's plots: matplotlib figures drawn on the Agg canvas (no display, no pyplot
state), each titled with its hardware key and footed with its software.

Every function takes rows of one hardware key; nothing here draws two machines' figures
on one axis. ``png`` turns a figure into the bytes the writers embed.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.report import reference

PHASE_BARS = (("ceiling_cpu", "decode ceiling (CPU)"), ("loader_only", "loader-only"), ("end_to_end", "end-to-end"), ("model_only", "model-only"))


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def label(fig: Figure, title: str, rows: pd.DataFrame) -> None:
    """Title with the hardware key; the software under it."""
    keys = rows["hardware_key"].drop_duplicates().tolist()
    if len(keys) != 1:
        raise ValueError(f"one figure, one hardware key: got {keys}")
    fig.suptitle(f"{title}\n{keys[0]}", fontsize=11)
    software = " | ".join(rows["software"].drop_duplicates())
    fig.supxlabel(f"Software: {software}", fontsize=7, color="0.35")


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def point_label(row: pd.Series) -> str:
    mode = row["mode_label"].replace(" (", "\n(")
    stall = f"\nstall {row['stall_fraction']:.2f}" if pd.notna(row["stall_fraction"]) else ""
    return f"{row['pipeline']}\n{mode}\nbatch {row['batch_size']}, {row['workers']} workers{stall}"


def throughput_bars(rows: pd.DataFrame) -> Figure:
    """Per measured point: the CPU decode ceiling, loader-only, end-to-end and model-only medians, quartiles as error bars."""
    done = rows[rows["end_to_end_median"].notna() | rows["loader_only_median"].notna()]
    fig = new_figure(max(6.0, 1.6 * len(done) + 2), 4.8)
    ax = fig.add_subplot()
    x = np.arange(len(done))
    width = 0.8 / len(PHASE_BARS)
    for i, (prefix, name) in enumerate(PHASE_BARS):
        median = done[f"{prefix}_median"].astype(float).to_numpy()
        low = np.clip(median - done[f"{prefix}_q1"].astype(float).to_numpy(), 0, None)
        high = np.clip(done[f"{prefix}_q3"].astype(float).to_numpy() - median, 0, None)
        ax.bar(x + (i - 1.5) * width, median, width, yerr=np.nan_to_num(np.vstack([low, high])), capsize=2, label=name)
    ax.set_xticks(x, [point_label(r) for _, r in done.iterrows()], fontsize=7)
    ax.set_yscale("log")  # the rates span orders of magnitude (a CPU trains at a few images/s and decodes at hundreds)
    ax.set_ylabel("images/s (median, log scale; bars: quartiles)")
    ax.legend(fontsize=8, ncols=len(PHASE_BARS), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    label(fig, "Throughput per pipeline and mode", rows)
    return fig


def sweep_lines(rows: pd.DataFrame, axis: str) -> Figure:
    """A sweep's end-to-end (solid) and loader-only (dashed) medians over ``axis`` ('workers' or 'batch_size'), one line per other setting."""
    other = "batch_size" if axis == "workers" else "workers"
    fig = new_figure(10.0, 4.4)
    ax = fig.add_subplot()
    done = rows[rows["status"] == "complete"]
    for (pipeline, mode, fixed), line in done.groupby(["pipeline", "mode_label", other], sort=True):
        line = line.sort_values(axis)
        name = f"{pipeline}, {mode}, {'batch' if other == 'batch_size' else 'workers'} {fixed}"
        drawn = ax.plot(line[axis], line["end_to_end_median"], marker="o", label=f"{name}: end-to-end")
        ax.plot(line[axis], line["loader_only_median"], marker="s", linestyle="--", color=drawn[0].get_color(), label=f"{name}: loader-only")
    ax.set_xlabel("loader workers" if axis == "workers" else "batch size (images)")
    ax.set_yscale("log")
    ax.set_ylabel("images/s (median, log scale)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    label(fig, f"Throughput sweep over {'workers' if axis == 'workers' else 'batch size'}", rows)
    return fig


def workers_scaling(rows: pd.DataFrame) -> Figure:
    """Loader-only median against workers, one line per pipeline and mode (batch sizes pooled by median), with the
    ideal linear line through the smallest worker count measured (at least one worker)."""
    fig = new_figure(8.0, 4.4)
    ax = fig.add_subplot()
    done = rows[(rows["status"] == "complete") & rows["loader_only_median"].notna()]
    for (pipeline, mode), group in done.groupby(["pipeline", "mode_label"], sort=True):
        line = group.groupby("workers")["loader_only_median"].median().sort_index()
        if len(line) < 2:
            continue
        drawn = ax.plot(line.index, line.to_numpy(), marker="o", label=f"{pipeline}, {mode}")
        base = line[line.index > 0]
        if not base.empty:
            w0 = base.index[0]
            ideal = np.array([w for w in line.index if w > 0])
            ax.plot(ideal, base.iloc[0] / w0 * ideal, linestyle=":", color=drawn[0].get_color(), label=f"{pipeline}: ideal linear from {w0} worker(s)")
    ax.set_xlabel("loader workers (processes or threads)")
    ax.set_ylabel("loader-only images/s (median)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    label(fig, "Loader-only rate against workers, with the ideal linear scaling", rows)
    return fig


def relu_tanh_curves(record_row: pd.Series, curves: pd.DataFrame) -> Figure:
    """Figure 1 as the paper draws it: training error against epochs, ReLU solid and tanh dashed on one axis, the target a line;
    beside it the same against training seconds."""
    fig = new_figure(10.0, 4.2)
    by_epoch, by_time = fig.subplots(1, 2, sharey=True)
    mine = curves[curves["run_id"] == record_row["run_id"]]
    per_epoch = record_row["iterations_per_epoch"]
    for activation, line in mine.groupby("activation", sort=False):
        lr = record_row[f"{activation}_lr"]
        name = f"{'ReLU' if activation == 'relu' else 'tanh'} (lr {lr:g})"
        style = "-" if activation == "relu" else "--"
        full = line[line["iteration"] >= per_epoch]  # the one-epoch average exists from the first full epoch on
        by_epoch.plot(full["iteration"] / per_epoch, full["window_error"], linestyle=style, color="k", label=name)
        by_time.plot(full["seconds"], full["window_error"], linestyle=style, color="k", label=name)
    target = record_row["target_error"] if pd.notna(record_row["target_error"]) else reference.RELU_TANH_TARGET
    for ax in (by_epoch, by_time):
        ax.axhline(target, color="tab:red", linestyle=":", linewidth=1, label=f"target {target:.0%}")
        ax.legend(fontsize=8)
    by_epoch.set_xlabel("epochs")
    by_time.set_xlabel("training seconds")
    by_epoch.set_ylabel("training error rate")
    ratio = (f"tanh / ReLU: {record_row['ratio_iterations']:.2f}x the iterations (paper: about {reference.RELU_TANH_RATIO:g}x)"
             if pd.notna(record_row["ratio_iterations"]) else str(record_row["ratio_reason"]))
    label(fig, f"ReLU vs tanh, {record_row['model']} on {record_row['dataset']}, {record_row['mode_label']}: {ratio}", record_row.to_frame().T)
    return fig


def accuracy_curves(rows: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """Per run: training and validation error per epoch, and the learning rate taken (drops marked)."""
    fig = new_figure(10.0, 4.2)
    errors, rates = fig.subplots(1, 2)
    for _, run in rows.iterrows():
        mine = curves[curves["run_id"] == run["run_id"]]
        if mine.empty:
            continue
        name = f"{run['run_id'][-8:]} {run['pipeline']}, {run['mode_label']}, {run['dataset']}"
        drawn = errors.plot(mine["epoch"], mine["val_top1_err"], marker="o", label=f"{name}: val top-1")
        colour = drawn[0].get_color()
        errors.plot(mine["epoch"], mine["val_top5_err"], marker="^", linestyle="--", color=colour, label=f"{name}: val top-5")
        errors.plot(mine["epoch"], mine["train_top1_err"], marker=".", linestyle=":", color=colour, label=f"{name}: train top-1")
        rates.plot(mine["epoch"], mine["lr"], drawstyle="steps-mid", marker="o", color=colour, label=name)
        for epoch in mine.loc[mine["lr_dropped_after"], "epoch"]:
            rates.axvline(epoch + 0.5, color=colour, linestyle=":", linewidth=1)
    for ax in (errors, rates):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    errors.set_ylim(-0.02, 1.02)
    errors.set_xlabel("epoch")
    errors.set_ylabel("error (fraction)")
    errors.legend(fontsize=6)
    rates.set_xlabel("epoch (dotted: lr divided by 10 after)")
    rates.set_ylabel("learning rate")
    rates.set_yscale("log")
    rates.legend(fontsize=6)
    label(fig, "Accuracy runs: error and learning rate per epoch", rows)
    return fig
