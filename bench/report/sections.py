"""What the report says, section by section, as a :class:`~bench.report.document.Document`.

Each harness's section has one subsection per hardware key; a table or plot never holds
figures from two machines.
"""

from __future__ import annotations

import time

import pandas as pd

from bench.report import headline, plots, reference, tables
from bench.report.document import Document, Figure, Section, slug
from bench.report.loading import Results


def figure(name: str, caption: str, fig) -> Figure:
    return Figure(name, caption, plots.png(fig))


def overview(results: Results) -> Section:
    counts = {name: len(frame) for name, frame in (("throughput", results.throughput), ("relu-tanh", results.relu_tanh), ("accuracy", results.accuracy))}
    keys = results.environment["hardware_key"].drop_duplicates().tolist() if not results.environment.empty else []
    blocks = [
        f"Built from {len(results.records)} run record(s) under `{results.root}` "
        f"({', '.join(f'{n} {h}' for h, n in counts.items())}) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, by `python -m bench.report`. "
        f"Hardware: {'; '.join(keys) or 'none'}. Figures are compared only within one hardware key: each section has one part per key.",
    ]
    smoke = [folder for folder, suite in results.suites.items() if suite.get("smoke")]
    if smoke:
        where = ", ".join("this results folder" if f == "." else f"`{f}`" for f in smoke)
        blocks.append(f"**Smoke run**: the records in {where} come from `python -m bench.suite --smoke`, at toy sizes "
                      "to check the machinery. Their figures measure nothing; do not quote them.")
    blocks.extend(headline.sentences(results.throughput))
    if not results.skipped.empty:
        blocks.append(f"**{len(results.skipped)} file(s) could not be read** and are left out: see 'Records not read' at the end.")
    if any(results.environment["hardware_key"].str.startswith("CPU only")) if not results.environment.empty else False:
        blocks.append("Hardware keys starting 'CPU only' are CPU figures: no GPU took part, whatever the mode's name says.")
    return Section("Overview", blocks=blocks)


def throughput(results: Results) -> list[Section]:
    frame = results.throughput
    sections = [Section("Throughput", blocks=[
        "Per pipeline and execution mode: the decode ceiling (the same files decoded with nothing else done, on every core, and with nvJPEG on a GPU), "
        "loader-only (the loader drained, no model), end-to-end (training through the loader) and model-only (training on one batch already on the device: "
        "the model's ceiling). Stall fraction = 1 - end-to-end / model-only. A mode marked 'emulated' ran model-parallel's two towers on one device: "
        "it is not a two-GPU figure."] if not frame.empty else ["No throughput records."])]
    for key, rows in tables.by_hardware(frame):
        section = Section(key, level=3, blocks=[tables.throughput(rows, key)])
        bad = tables.failed(rows, key, "throughput")
        if bad is not None:
            section.blocks.append(bad)
        measured = rows[rows["end_to_end_median"].notna() | rows["loader_only_median"].notna()]
        if not measured.empty:
            section.blocks.append(figure(f"throughput-{slug(key)}", f"Throughput per point, {key}: medians with quartiles; stall fraction under each group.",
                                         plots.throughput_bars(rows)))
        feeding = tables.feeding(rows, key)
        if feeding is not None:
            section.blocks.append(feeding)
        scaling = rows[rows["status"] == "complete"].groupby(["pipeline", "mode_label"])["workers"].nunique()
        if (scaling > 1).any():  # issue 14: rate against workers, with the ideal line
            section.blocks.append(figure(f"workers-scaling-{slug(key)}", f"Loader-only rate against workers, {key}: dotted, the ideal linear "
                                         "line through the fewest workers measured.", plots.workers_scaling(rows)))
        for sweep_id, sweep in rows[rows["sweep_id"].notna()].groupby("sweep_id", sort=False):
            for axis in ("workers", "batch_size"):
                if sweep.loc[sweep["status"] == "complete", axis].nunique() > 1:  # a line needs two measured points
                    section.blocks.append(figure(f"sweep-{slug(sweep_id)}-{axis}-{slug(key)}",
                                                 f"Sweep {sweep_id} over {axis.replace('_', ' ')}, {key}.", plots.sweep_lines(sweep, axis)))
        sections.append(section)
    return sections


def relu_tanh(results: Results) -> list[Section]:
    frame = results.relu_tanh
    blocks: list = [
        f"{reference.RELU_TANH_SOURCE}. Training error here is each minibatch's error averaged over the last epoch's worth of iterations "
        "(beside it, a finer measure over a fixed window of iterations); a figure reached the moment its window filled is only an upper "
        "bound and gives no ratio; a run that did not reach the target shows why instead of a number. Figure 1's own network was never "
        "published: the table names the network each run used."] if not frame.empty else ["No relu-tanh records."]
    warning = tables.relu_tanh_warning(frame)
    if warning:
        blocks.append(warning)
    sections = [Section("ReLU vs tanh (the paper's Figure 1)", blocks=blocks)]
    for key, rows in tables.by_hardware(frame):
        section = Section(key, level=3, blocks=[tables.relu_tanh(rows, key)])
        bad = tables.failed(rows, key, "relu-tanh")
        if bad is not None:
            section.blocks.append(bad)
        for _, row in rows.iterrows():
            if not results.relu_tanh_curves.empty and (results.relu_tanh_curves["run_id"] == row["run_id"]).any():
                section.blocks.append(figure(f"relu-tanh-{slug(row['run_id'])}", f"Run {row['run_id']}, {key}: Figure 1 as the paper draws it (training error against epochs, "
                                             "ReLU solid, tanh dashed, the target as a line), and against training seconds.",
                                             plots.relu_tanh_curves(row, results.relu_tanh_curves)))
        sections.append(section)
    return sections


def accuracy(results: Results) -> list[Section]:
    frame = results.accuracy
    blocks: list = [tables.published_accuracy()]
    if not frame.empty:
        embedded = frame[frame["dataset_embedded"].fillna(False).astype(bool)]
        if not embedded.empty:
            blocks.append(f"**Not ImageNet.** {len(embedded)} of {len(frame)} run(s) below trained on the embedded data: generated images of "
                          f"{', '.join(str(c) for c in embedded['classes'].drop_duplicates())} classes, a few epochs on a small set. Their error rates show "
                          "that the machinery trains; they say nothing about AlexNet on ImageNet and are not comparable with the published rows above.")
        short = frame[frame["epochs_run"] < 90]
        if not short.empty:
            blocks.append(f"{len(short)} run(s) trained fewer than the paper's 90 epochs (see 'epochs').")
    else:
        blocks.append("No accuracy records.")
    sections = [Section("Accuracy", blocks=blocks)]
    for key, rows in tables.by_hardware(frame):
        section = Section(key, level=3, blocks=[tables.accuracy(rows, key)])
        if not results.accuracy_curves.empty and results.accuracy_curves["run_id"].isin(rows["run_id"]).any():
            section.blocks.append(tables.lr_schedule(rows, results.accuracy_curves, key))
            section.blocks.append(figure(f"accuracy-{slug(key)}", f"Accuracy runs, {key}: errors and learning rate per epoch.",
                                         plots.accuracy_curves(rows, results.accuracy_curves)))
        sections.append(section)
    return sections


def environment(results: Results) -> Section:
    if results.environment.empty:
        return Section("Environment", blocks=["No records."])
    return Section("Environment", blocks=[tables.environment(results.environment)])


def skipped(results: Results) -> list[Section]:
    if results.skipped.empty:
        return []
    return [Section("Records not read", blocks=[tables.skipped(results.skipped)])]


def build_document(results: Results) -> Document:
    from bench.report.scale_section import at_imagenet_scale  # issue 15

    return Document("alexnet-bench report", [overview(results), *throughput(results), *relu_tanh(results), *accuracy(results),
                                             *at_imagenet_scale(results), environment(results), *skipped(results)])
