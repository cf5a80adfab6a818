"""Every run record under a results directory, as pandas DataFrames: one per harness, one of
the environment, the curves in long form, and the files that could not be read (with why).

The report, the suite's call to it and the notebooks all read records through
:func:`load_results`; nothing here computes a figure the record does not hold, except the
labels that make a row readable (``mode_label``, ``software``).
"""

from __future__ import annotations

import dataclasses

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.harness.feeding import rate_per_core
from bench.records import read_record

SUITE_FILE = "suite.json"
PHASES = ("loader_only", "end_to_end", "model_only")
ACTIVATIONS = ("relu", "tanh")
# provenance.packages names -> short column names
PACKAGE_COLUMNS = {"torch": "torch", "torchvision": "torchvision", "nvidia-dali-cuda130": "dali", "ffcv": "ffcv"}


@dataclass
class Results:
    """What a results directory holds, ready for tables and plots."""

    root: Path
    throughput: pd.DataFrame
    relu_tanh: pd.DataFrame
    accuracy: pd.DataFrame
    environment: pd.DataFrame
    accuracy_curves: pd.DataFrame
    relu_tanh_curves: pd.DataFrame
    skipped: pd.DataFrame  # file, reason
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # run_id -> the record as read
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder (relative) -> its suite.json, for each suite's results found
    scale: pd.DataFrame = field(default_factory=pd.DataFrame)  # issue 15: python -m bench.scale's records (bench/report/scale_section.py)

    @property
    def empty(self) -> bool:
        return not self.records


def mode_label(mode: dict) -> str:
    """The mode as a reader must see it: name, processes, and 'emulated' whenever the towers share a device."""
    label = mode.get("name", "?")
    if mode.get("world_size", 1) > 1:
        label += f" x{mode['world_size']}" + (f" ({mode['backend']})" if mode.get("backend") else "")
    if mode.get("emulated"):
        towers = mode.get("towers") or mode.get("devices") or []
        label += f" (emulated: both towers on {towers[0]})" if towers else " (emulated)"
    return label


def software_label(row: dict | pd.Series) -> str:
    """torch, torchvision, DALI, FFCV versions and the commit, in one line."""
    def version(name: str) -> str:
        value = row.get(name)
        return value if isinstance(value, str) and value else "-"

    commit = row.get("commit") or "unknown"
    short = commit[:10] + ("+dirty" if row.get("dirty") else "")
    return (f"torch {version('torch')}, torchvision {version('torchvision')}, DALI {version('dali')}, "
            f"FFCV {version('ffcv')}; commit {short}")


def common_columns(record: dict, file: str) -> dict[str, Any]:
    """Columns every harness's row has: identity, status, provenance."""
    prov = record["provenance"]
    hardware = prov["hardware"]
    packages = prov.get("packages", {})
    row = {
        "run_id": record["run_id"],
        "file": file,
        "harness": record["harness"],
        "status": record["status"],
        "hardware_key": hardware["key"],
        "cpu": hardware.get("cpu"),
        "cpu_count": hardware.get("cpu_count"),
        "gpus": ", ".join(hardware.get("gpus") or []) or "none",
        "gpu_count": hardware.get("gpu_count", 0),
        **{column: packages.get(name) for name, column in PACKAGE_COLUMNS.items()},
        "commit": prov.get("git", {}).get("commit", "unknown"),
        "dirty": prov.get("git", {}).get("dirty"),
        "seed": prov.get("seed"),
        # issue 13: how the model computed, beside every figure (records before it: fp32, row-major)
        "precision": prov.get("compute", {}).get("precision", "fp32"),
        "channels_last": prov.get("compute", {}).get("channels_last", False),
        "started": pd.to_datetime(record.get("started"), unit="s", utc=True) if record.get("started") is not None else pd.NaT,
    }
    row["software"] = software_label(row)
    return row


def mode_columns(mode: dict) -> dict[str, Any]:
    return {"mode": mode["name"], "mode_label": mode_label(mode), "emulated": bool(mode.get("emulated")), "world_size": mode.get("world_size", 1),
            "devices": ", ".join(mode.get("devices", []))}


def dataset_columns(dataset: dict) -> dict[str, Any]:
    return {"dataset": dataset.get("name"), "dataset_embedded": dataset.get("embedded"), "classes": dataset.get("classes"),
            "dataset_fingerprint": dataset.get("fingerprint")}


def stats_columns(prefix: str, stats: dict | None) -> dict[str, Any]:
    """A stats object as ``<prefix>_median``, ``_q1``, ``_q3``, ``_iqr``, ``_min``, ``_max``, ``_n`` (NaN when absent)."""
    stats = stats or {}
    out = {f"{prefix}_{key}": stats.get(key) for key in ("median", "q1", "q3", "iqr", "min", "max")}
    out[f"{prefix}_n"] = len(stats.get("values", []))
    return out


def throughput_row(record: dict, file: str) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    sweep = record.get("sweep") or {}
    row = {**common_columns(record, file), "pipeline": record["pipeline"]["name"], "pipeline_decoder": record["pipeline"].get("decoder"),
           **mode_columns(record["mode"]),
           "batch_size": record["batch_size"], "workers": record["workers"], "model": record.get("model", {}).get("name"),
           **dataset_columns(record.get("dataset", {})), "error": record.get("error"),
           "sweep_id": sweep.get("id"), "sweep_index": sweep.get("index")}
    for phase in PHASES:
        row.update(stats_columns(phase, (metrics.get(phase) or {}).get("images_per_s")))
    ceiling = metrics.get("decode_ceiling") or {}
    cpu = ceiling.get("cpu") or {}
    row.update(stats_columns("ceiling_cpu", cpu.get("images_per_s")))
    row["ceiling_cpu_decoder"] = cpu.get("best_decoder")
    nvjpeg = ceiling.get("nvjpeg") or {}
    row.update(stats_columns("ceiling_nvjpeg", nvjpeg.get("images_per_s")))
    row["ceiling_nvjpeg_skipped"] = nvjpeg.get("skipped")
    row["stall_fraction"] = metrics.get("stall_fraction")
    shares = metrics.get("loader_share_of_ceiling") or {}
    row["loader_share_cpu"] = shares.get("cpu")
    row["loader_share_nvjpeg"] = shares.get("nvjpeg")
    row["bound_by"] = metrics.get("bound_by")
    e2e_resources = (metrics.get("end_to_end") or {}).get("resources") or {}
    row["machine_cpu_percent"] = e2e_resources.get("machine_cpu_percent")
    # issue 14: the stock baseline, cores busy while loading, the feed target
    stock = metrics.get("stock_baseline") or {}
    row["stock_name"] = stock.get("name")
    row.update(stats_columns("stock_loader_only", (stock.get("loader_only") or {}).get("images_per_s")))
    row["stock_ratio"] = stock.get("ratio")
    row["stock_skipped"] = stock.get("skipped")
    row["loader_cores_busy"] = ((metrics.get("loader_only") or {}).get("resources") or {}).get("cpu_cores_busy")
    row["rate_per_core"] = rate_per_core(row["loader_only_median"], row["loader_cores_busy"])
    row["feed_target"] = (record.get("config") or {}).get("feed_target") or 0.0
    row["precision"] = (record.get("config") or {}).get("precision")  # issue 13 adds it; absent in older records
    one_off = record.get("one_off_seconds") or {}
    for what, seconds in (one_off.get("harness") or {}).items():
        row[f"one_off_{what}"] = seconds
    for what, seconds in (one_off.get("pipeline") or {}).items():  # e.g. FFCV's conversion and compilation, DALI's build
        row[f"one_off_{record['pipeline']['name']}_{what.removesuffix('_s')}_s"] = seconds
    return row


# What the accuracy tables compare with the paper's recipe, and the relu-tanh tables with the harness's
# own defaults (issue 12): the settings a preset or a flag may have changed.
ACCURACY_KEYS = ("init", "batch_size", "lr", "epochs", "update_rule", "decay_biases", "weight_decay")
RELU_TANH_KEYS = ("batch_size", "epochs", "relu_tanh_lrs", "model", "weight_decay")


def preset_columns(config: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    """``preset`` and ``changed``: the settings among ``keys`` that differ from this project's defaults, as 'name value' text.

    The defaults are the paper's recipe (accuracy) or relu-tanh's own (its harness defaults applied);
    a record from before a setting existed simply lacks it and is not called changed.
    """
    from bench.config import HARNESS_DEFAULTS, RunConfig

    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
    defaults.update(HARNESS_DEFAULTS.get(config.get("harness", ""), {}))
    changed = [f"{k} {config[k]:g}" if isinstance(config[k], float) else f"{k} {config[k]}"
               for k in keys if k in config and k in defaults and config[k] != defaults[k]]
    return {"preset": config.get("preset"), "changed": ", ".join(changed) or "none"}


def relu_tanh_row(record: dict, file: str) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    protocol = record.get("protocol") or {}
    results = record.get("results") or {}
    dataset = record.get("dataset") or {}
    row = {**common_columns(record, file), **mode_columns(record["mode"]), "model": record.get("model", {}).get("name"),
           "dataset": dataset.get("name"), "dataset_embedded": dataset.get("embedded"), "dataset_fingerprint": dataset.get("fingerprint"),
           "target_error": protocol.get("target_error"), "budget_epochs": protocol.get("budget_epochs"),
           "iterations_per_epoch": protocol.get("iterations_per_epoch"), "batch_size": protocol.get("batch_size"), "error": record.get("error"),
           "dataset_official_cifar10": dataset.get("official_cifar10"), "model_note": record.get("model", {}).get("note"),
           "model_source": record.get("model", {}).get("source"), "window_iterations": protocol.get("window_iterations"),
           "lr_grid": ", ".join(f"{lr:g}" for lr in protocol.get("lr_grid", [])), **preset_columns(record.get("config") or {}, RELU_TANH_KEYS)}
    for activation in ACTIVATIONS:
        result = results.get(activation) or {}
        row[f"{activation}_lr"] = result.get("lr")
        row[f"{activation}_lr_at_grid_edge"] = result.get("lr_at_grid_edge")
        row[f"{activation}_lr_grid_added"] = ", ".join(f"{lr:g}" for lr in result.get("lr_grid_added", []))
        for key in ("iterations_to_target", "epochs_to_target", "seconds_to_target", "reason", "final_training_error", "iterations_run",
                    "window_limited", "iterations_to_target_window", "window_limited_window", "window_reason", "lr_edge_reason"):
            row[f"{activation}_{key}"] = result.get(key)
    ratio = metrics.get("ratio_tanh_to_relu") or {}
    for key in ("iterations", "epochs", "seconds"):
        row[f"ratio_{key}"] = ratio.get(key)
    row["ratio_reason"] = metrics.get("ratio_reason") if metrics else (record.get("error") or "the run did not finish")
    row["ratio_window"] = metrics.get("ratio_tanh_to_relu_window")
    row["ratio_window_reason"] = metrics.get("ratio_window_reason") if metrics else row["ratio_reason"]
    return row


def accuracy_row(record: dict, file: str) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    curves = record.get("curves") or {}
    row = {**common_columns(record, file), "pipeline": record["pipeline"]["name"], **mode_columns(record["mode"]),
           "model": record.get("model", {}).get("name"), **dataset_columns(record.get("dataset", {})),
           "epochs_run": len(curves.get("epoch", [])), "epochs_planned": record.get("epochs_planned"),
           "steps_per_epoch": (record.get("config") or {}).get("steps_per_epoch"),
           "batch_size": (record.get("config") or {}).get("batch_size"), "preset": (record.get("config") or {}).get("preset"),
           **preset_columns(record.get("config") or {}, ACCURACY_KEYS)}
    for key in ("top1_err_centre", "top5_err_centre", "top1_err_10crop", "top5_err_10crop", "val_samples"):
        row[key] = metrics.get(key)
    row["lr_schedule"] = ", ".join(f"{lr:g}" for lr in curves.get("lr", []))
    row["lr_drops_after_epochs"] = ", ".join(str(e) for e in curves.get("lr_drops", [])) or "none"
    return row


def accuracy_curve_rows(record: dict) -> list[dict[str, Any]]:
    curves = record.get("curves") or {}
    keys = ("train_loss", "train_top1_err", "val_top1_err", "val_top5_err", "lr", "images_per_s", "epoch_seconds")
    drops = set(curves.get("lr_drops", []))
    return [{"run_id": record["run_id"], "epoch": epoch, **{k: curves.get(k, [None] * (i + 1))[i] for k in keys}, "lr_dropped_after": epoch in drops}
            for i, epoch in enumerate(curves.get("epoch", []))]


def relu_tanh_curve_rows(record: dict) -> list[dict[str, Any]]:
    rows = []
    for activation in ACTIVATIONS:
        curves = ((record.get("results") or {}).get(activation) or {}).get("curves") or {}
        for i, window in enumerate(curves.get("window_error", [])):
            rows.append({"run_id": record["run_id"], "activation": activation, "iteration": i + 1, "window_error": window,
                         "batch_error": curves["batch_error"][i], "batch_loss": curves["batch_loss"][i], "seconds": curves["seconds"][i]})
    return rows


def environment_row(record: dict, file: str) -> dict[str, Any]:
    row = common_columns(record, file)
    dataset = record.get("dataset") or {}
    row["dataset"] = dataset.get("name")
    row["dataset_fingerprint"] = dataset.get("fingerprint")
    row["python"] = record["provenance"].get("python")
    threads = record["provenance"].get("threads") or {}
    row["torch_threads"] = threads.get("torch")
    return row


ROWS: dict[str, Callable[[dict, str], dict[str, Any]]] = {"throughput": throughput_row, "relu-tanh": relu_tanh_row, "accuracy": accuracy_row}


def _scale_row(record: dict, file: str) -> dict[str, Any]:  # issue 15: imported here, not at the top, to keep loading.py free of a cycle
    from bench.report.scale_section import scale_row

    return scale_row(record, file)


ROWS["scale"] = _scale_row


def record_files(results: Path) -> list[Path]:
    """Every ``*.json`` under ``results``, recursively, in a stable order (the suites' ``suite.json`` apart)."""
    return sorted(p for p in results.rglob("*.json") if p.is_file() and p.name != SUITE_FILE)


def load_results(results: str | Path) -> Results:
    """Read every record under ``results``; one that cannot be read or understood is listed in ``skipped`` with its reason."""
    root = Path(results)
    rows: dict[str, list[dict]] = {harness: [] for harness in ROWS}
    environment, accuracy_curves, relu_tanh_curves, skipped = [], [], [], []
    records: dict[str, dict] = {}
    for path in record_files(root):
        file = str(path.relative_to(root))
        try:
            record = read_record(path)
            harness = record.get("harness")
            if harness not in ROWS:
                raise ValueError(f"unknown harness {harness!r}")
            if record.get("run_id") in records:
                raise ValueError(f"run_id {record['run_id']} already read from {records[record['run_id']]['_file']}")
            row = ROWS[harness](record, file)
            env = environment_row(record, file)
            curves = accuracy_curve_rows(record) if harness == "accuracy" else relu_tanh_curve_rows(record) if harness == "relu-tanh" else []
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            reason = str(err) if isinstance(err, ValueError) else f"missing or malformed field {err}" if isinstance(err, KeyError) else f"malformed record ({type(err).__name__}: {err})"
            skipped.append({"file": file, "reason": reason.replace(f"{path}: ", "")})
            continue
        rows[harness].append(row)
        environment.append(env)
        (accuracy_curves if harness == "accuracy" else relu_tanh_curves).extend(curves)
        records[record["run_id"]] = {**record, "_file": file}
    suites = {}
    for path in sorted(root.rglob(SUITE_FILE)):
        try:
            suites[str(path.parent.relative_to(root))] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            skipped.append({"file": str(path.relative_to(root)), "reason": f"not readable JSON ({err})"})
    return Results(
        root=root,
        throughput=_frame(rows["throughput"]),
        relu_tanh=_frame(rows["relu-tanh"]),
        accuracy=_frame(rows["accuracy"]),
        environment=_frame(environment),
        accuracy_curves=pd.DataFrame(accuracy_curves),
        relu_tanh_curves=pd.DataFrame(relu_tanh_curves),
        skipped=pd.DataFrame(skipped, columns=["file", "reason"]),
        records=records,
        suites=suites,
        scale=_frame(rows["scale"]),
    )


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Rows in run order (start time, then run id)."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["started", "run_id"], kind="stable").reset_index(drop=True)
