"""The throughput harness: for one pipeline, mode, batch size and worker count, in one run

1. the decode ceiling: the same training files decoded with no augmentation on every core
   (and with nvJPEG on a GPU) (``bench.harness.ceiling``);
2. loader-only: the training loader drained, no model;
3. end-to-end: training steps through the loader (a fresh epoch of the same loader);
4. model-only: training steps on one batch already on the device, the loader closed: what
   the model could do if data were free;

each phase with warm-up excluded, ``--repeats`` timed repeats, median and spread, CPU time
and peak memory (``bench.harness.timing``). Then the stall fraction,
``1 - end-to-end / model-only`` (medians), and the loader's share of each ceiling,
``loader-only / ceiling`` (medians). One-off costs (loader construction, the first batch,
and what the pipeline reports in ``describe()["one_off_seconds"]``: FFCV's conversion and
compilation, DALI's start-up) are kept apart from every rate.

With any ``--sweep-*`` flag the harness runs every point of pipelines x worker counts x
batch sizes and writes one record per point; a point that fails is recorded as failed,
with its error, and the sweep goes on; in data-parallel every rank agrees that it failed and
skips it (``bench.harness.execution.together``). A rank that fails in the middle of a timed
phase, while another waits for it inside a collective call, hears nothing back within
``POINT_AGREEMENT_S`` and ends the job, naming its error: the launcher then stops the others at
once, where they used to wait out the process group's timeout (600 s) and record that timeout.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from bench.builders import augment_spec, build_model, pipeline_options
from bench.config import RunConfig
from bench.data.source import Dataset, open_dataset
from bench.errors import UserError
from bench.console import notice, say
from bench.harness.baselines import measure_stock, ratio_to_stock
from bench.harness.ceiling import ceiling_files, decode_ceiling
from bench.harness.stream import BatchStream, epoch_starts, loader_only_phase
from bench.harness.execution import JobMustEnd, timing_boundary, to_device, together
from bench.harness.timing import TIMER, Repeat, phase_result, run_phase
from bench.modes import Mode, running_mode
from bench.precision import set_precision, to_memory_format
from bench.provenance import provenance
from bench.records import ended_by, new_run_id, read_record, write_record
from bench.train import make_optimizer, train_step
from pipelines import available_pipelines, create_pipeline
from pipelines.base import Batch, Loader
from pipelines.registry import entry

POINT_AGREEMENT_S = 60.0  # after a point the ranks are at most a record's writing apart; a rank stuck in a collective never answers

# What 0 means for the amount of work per measurement: small on a CPU (a training step of
# AlexNet takes seconds there), timm's benchmark.py counts on a GPU.
AUTO_CPU = {"warmup_batches": 2, "batches_per_repeat": 3, "loader_batches_per_repeat": 12}
AUTO_CUDA = {"warmup_batches": 10, "batches_per_repeat": 40, "loader_batches_per_repeat": 40}


@dataclass(frozen=True)
class Protocol:
    """The amount of work per measurement, as used (0s in the config resolved for the device)."""

    warmup_batches: int
    batches_per_repeat: int
    loader_batches_per_repeat: int
    repeats: int
    ceiling_images: int
    timer: str = TIMER
    cuda_synchronised: bool = False
    epoch_batches: int | None = None  # the training loader's batches per epoch (a timed repeat holds at most that many)


def protocol_for(config: RunConfig, device: torch.device) -> Protocol:
    auto = AUTO_CUDA if device.type == "cuda" else AUTO_CPU
    return Protocol(
        warmup_batches=config.warmup_batches or auto["warmup_batches"],
        batches_per_repeat=config.batches_per_repeat or auto["batches_per_repeat"],
        loader_batches_per_repeat=config.loader_batches_per_repeat or auto["loader_batches_per_repeat"],
        repeats=config.repeats,
        ceiling_images=config.ceiling_images,
        cuda_synchronised=device.type == "cuda",
    )


def stall_fraction(end_to_end: float, model_only: float) -> float:
    """1 - end-to-end / model-only: the share of the model's possible rate lost waiting for data (negative within noise)."""
    return 1.0 - end_to_end / model_only


def shares_of_ceiling(loader_only: float, ceilings: dict) -> dict:
    """The loader-only rate as a fraction of each measured ceiling (None where one was skipped)."""
    out = {}
    for name in ("cpu", "nvjpeg"):
        rate = ceilings.get(name, {}).get("images_per_s")
        out[name] = loader_only / rate["median"] if rate else None
    return out


def across_processes(phase: dict, mode: Mode) -> dict:
    """A phase measured by every process of ``mode``, as the job's: each repeat's images summed and its
    time the slowest process's (the repeats start and end at a barrier); CPU time, memory and processes summed."""
    if mode.world_size == 1:
        return phase
    images = mode.sum_across([r["images"] for r in phase["repeats"]])
    seconds = mode.max_across([r["seconds"] for r in phase["repeats"]])
    res = dict(phase["resources"])
    res["cpu_seconds"], res["peak_rss_bytes"], res["processes"] = mode.sum_across([res["cpu_seconds"], res["peak_rss_bytes"], res["processes"]])
    [res["wall_s"]] = mode.max_across([res["wall_s"]])
    res["cpu_cores_busy"] = res["cpu_seconds"] / res["wall_s"] if res["wall_s"] > 0 else float("nan")
    res["cpu_percent_of_available"] = 100.0 * res["cpu_cores_busy"] / res["cores_available"]
    res["note"] = f"summed over the {mode.world_size} processes of one machine"
    timed = [Repeat(int(i), s) for i, s in zip(images, seconds)]
    return phase_result(timed, warmup=phase["warmup_batches"], steps=phase["batches_per_repeat"], resources=res)


def measure(config: RunConfig, mode: Mode, *, dataset: Dataset | None = None, sweep: dict | None = None) -> Path | None:
    """One point: every phase, one record (status failed, with the error, if a phase raises); None on ranks other than 0."""
    device = mode.input_device
    boundary = timing_boundary(mode)
    if dataset is None:
        if mode.is_main:  # rank 0 checks the data; the others then read the cache
            dataset = open_dataset(config)
        mode.barrier()
        dataset = dataset or open_dataset(config)
    protocol = protocol_for(config, device)
    split = dataset.manifest.split("train")
    spec = augment_spec(config, dataset)
    if sweep is None and len(split) < config.batch_size:
        raise UserError(f"--batch-size {config.batch_size}: the training split has only {len(split)} images")
    run_id = new_run_id(config.harness, config.pipeline, config.mode)
    say(config, f"run {run_id}: throughput of {config.pipeline}, {config.mode} on {', '.join(mode.describe()['devices'])} x{mode.world_size}, batch {config.batch_size}, "
                f"{config.workers} worker(s), {config.model}; {protocol.repeats} repeats after {protocol.warmup_batches} warm-up batches")
    metrics: dict = {}
    one_off: dict = {}
    pipeline = loader = None
    net = None
    batch = None  # per process
    status, error = "complete", None
    started = time.time()
    torch_settings = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    set_precision(config.precision)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # throughput: the fastest kernels for the fixed shape
    try:
        ceilings = {}
        with together(mode, "set-up and decode ceiling"):  # a failure here, on any rank, fails the point on every rank
            batch = mode.per_process_batch(config.batch_size)
            pipeline = create_pipeline(config.pipeline, spec, pipeline_options(config, device, rank=mode.rank, world_size=mode.world_size, batch_size=batch))
            if len(split) < config.batch_size:
                raise UserError(f"--batch-size {config.batch_size}: the training split has only {len(split)} images")
            files = ceiling_files(split.paths, protocol.ceiling_images)
            if mode.is_main:  # the ceiling uses every core: one process measures it while the others wait
                ceilings = decode_ceiling(files, repeats=protocol.repeats, device=device, batch_size=config.batch_size, root=dataset.manifest.root)
        metrics["decode_ceiling"] = ceilings
        if mode.is_main:
            say(config, f"decode ceiling ({len(files)} files, {ceilings['cpu']['processes']} processes): "
                + ", ".join(f"{d} {v['images_per_s']['median']:.1f} img/s" for d, v in ceilings["cpu"]["decoders"].items())
                + (f", nvJPEG {ceilings['nvjpeg']['images_per_s']['median']:.1f} img/s" if "images_per_s" in ceilings["nvjpeg"] else ""))

        t0 = time.perf_counter()
        loader = pipeline.train_loader(split)
        one_off["build_loader_s"] = time.perf_counter() - t0
        if len(loader) == 0:
            raise UserError(f"--batch-size {config.batch_size}: the training split ({len(split)} images) gives no full batch")
        stream = BatchStream(loader)
        # A timed repeat fits in one epoch (issue 13): at most an epoch's batches per repeat, recorded as used.
        protocol = dataclasses.replace(protocol, epoch_batches=len(loader),
                                       batches_per_repeat=min(protocol.batches_per_repeat, len(loader)),
                                       loader_batches_per_repeat=min(protocol.loader_batches_per_repeat, len(loader)))
        t0 = time.perf_counter()
        first = next(stream)
        mode.synchronize()
        one_off["first_batch_s"] = time.perf_counter() - t0
        saved = tuple(t.clone() for t in first)  # loaders may reuse their output buffers

        phase = loader_only_phase(stream, warmup=protocol.warmup_batches, steps=protocol.loader_batches_per_repeat, repeats=protocol.repeats,
                                  device=device, devices=mode.devices(), boundary=boundary, progress=config.progress)
        metrics["loader_only"] = {**across_processes(phase, mode), "epoch_starts": phase["epoch_starts"]}
        say(config, f"loader-only: {metrics['loader_only']['images_per_s']['median']:.1f} img/s")
        if config.baselines and mode.world_size == 1:  # issue 14: the library's stock loader, loader-only, same files and protocol
            stock = measure_stock(config.pipeline, split, crop=spec.crop, batch_size=batch, workers=config.workers, seed=config.seed, device=device,
                                  cache_dir=config.cache_dir, protocol=protocol, boundary=boundary, progress=config.progress)
            stock["ratio"] = ratio_to_stock(metrics["loader_only"]["images_per_s"]["median"], stock)
            metrics["stock_baseline"] = stock
            say(config, f"stock {config.pipeline} loader-only: " + (f"{stock['loader_only']['images_per_s']['median']:.1f} img/s; ours / stock {stock['ratio']:.2f}"
                                                                    if stock["ratio"] is not None else f"skipped ({stock['skipped']})"))

        net = to_memory_format(mode.place(build_model(config, len(dataset.manifest.classes))), config.channels_last)
        optimizer = make_optimizer(net, config)
        net.train()

        def train_on(batch: Batch) -> int:
            images, labels = to_device(batch, mode)
            train_step(net, optimizer, images, labels, precision=config.precision, channels_last=config.channels_last)
            return int(labels.shape[0])

        stream.new_epoch()
        starts = len(stream.epoch_start_seconds)
        metrics["end_to_end"] = across_processes(run_phase(lambda: train_on(next(stream)), warmup=protocol.warmup_batches,
                                                           steps=protocol.batches_per_repeat, repeats=protocol.repeats, device=device, devices=mode.devices(),
                                                           boundary=boundary, progress=config.progress, desc="end-to-end",
                                                           before_repeat=lambda: stream.fit(protocol.batches_per_repeat)), mode)
        metrics["end_to_end"]["epoch_starts"] = epoch_starts(stream, starts)
        say(config, f"end-to-end: {metrics['end_to_end']['images_per_s']['median']:.1f} img/s")
        loader.close()  # model-only runs with no loader work in the background

        resident = to_device(saved, mode)
        if config.channels_last:  # converted once, as a pipeline feeding NHWC would hand it over
            resident = (resident[0].contiguous(memory_format=torch.channels_last), resident[1])
        metrics["model_only"] = across_processes(run_phase(lambda: train_on(resident), warmup=protocol.warmup_batches,
                                                           steps=protocol.batches_per_repeat, repeats=protocol.repeats, device=device, devices=mode.devices(),
                                                           boundary=boundary, progress=config.progress, desc="model-only"), mode)
        say(config, f"model-only: {metrics['model_only']['images_per_s']['median']:.1f} img/s")

        loader_rate = metrics["loader_only"]["images_per_s"]["median"]
        e2e_rate = metrics["end_to_end"]["images_per_s"]["median"]
        model_rate = metrics["model_only"]["images_per_s"]["median"]
        metrics["stall_fraction"] = stall_fraction(e2e_rate, model_rate)
        metrics["loader_share_of_ceiling"] = shares_of_ceiling(loader_rate, ceilings)
        metrics["bound_by"] = "loader" if loader_rate < model_rate else "model"
        if mode.is_main:
            say(config, f"stall fraction {metrics['stall_fraction']:.3f}; loader at {metrics['loader_share_of_ceiling']['cpu']:.2f} of the CPU decode ceiling")
    except BaseException as err:
        status, error = ended_by(err)
        raise
    finally:
        if loader is not None:
            loader.close()
        path = None
        if mode.is_main:  # the other processes' figures are in rank 0's (summed); it alone writes
            record = {
                "run_id": run_id,
                "harness": "throughput",
                "status": status,
                "error": error,
                "started": started,
                "finished": time.time(),
                "config": config.to_dict(),
                "sweep": sweep,
                "protocol": dataclasses.asdict(protocol),
                "dataset": dataset.describe(),
                "pipeline": pipeline.describe() if pipeline is not None else {"name": config.pipeline},
                "mode": {**mode.describe(), "batch_per_process": batch, "global_batch": config.batch_size},
                "model": {"name": config.model, "parameters": sum(p.numel() for p in net.parameters()) if net is not None else None},
                "batch_size": config.batch_size,
                "workers": config.workers,
                "metrics": metrics,
                "one_off_seconds": {"harness": one_off, "pipeline": pipeline.describe().get("one_off_seconds", {}) if pipeline is not None else {}},
                "provenance": provenance(config.seed, config),
            }
            path = write_record(config.out, record)
            notice(True, f"record: {path}")
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = torch_settings
    return path


def sweep_pipelines(names: list[str]) -> list[str]:
    """The sweep's pipeline axis: 'installed' expanded; an unknown name is the user's error (one not installed is a failing point)."""
    if names == ["installed"]:
        return available_pipelines()
    for name in names:
        try:
            entry(name)
        except ValueError as err:
            raise UserError(f"--sweep-pipelines: {err}") from None
    return names


def run_sweep(config: RunConfig, mode: Mode, axes: dict) -> list[Path]:
    """Every point of pipelines x workers x batch sizes, one record each; failures are recorded and skipped."""
    pipelines = sweep_pipelines(axes["pipeline"])
    points = list(itertools.product(pipelines, axes["workers"], axes["batch_size"]))
    if mode.is_main:
        dataset = open_dataset(config)
    mode.barrier()
    if not mode.is_main:
        dataset = open_dataset(config)
    sweep_id = f"sweep-{uuid.uuid4().hex[:8]}"  # only rank 0's is written
    cleared = dict(sweep_pipelines="", sweep_workers="", sweep_batch_sizes="")
    paths, rows = [], []
    for index, (pipeline, workers, batch_size) in enumerate(points):
        point = dataclasses.replace(config, pipeline=pipeline, workers=workers, batch_size=batch_size, **cleared)
        info = {"id": sweep_id, "index": index, "points": len(points), "axes": {**axes, "pipeline": pipelines}}
        say(config, f"[{index + 1}/{len(points)}] {pipeline}, {workers} worker(s), batch {batch_size}")
        row = {"pipeline": pipeline, "workers": workers, "batch_size": batch_size}
        path = None
        try:
            # Every rank learns whether the point failed anywhere, so all skip it together and the next
            # point's collective calls pair with the same point's on every rank; a rank that failed while
            # another waits inside the point's collective calls gets no answer and ends the job.
            with together(mode, f"sweep point {index + 1}", within_s=POINT_AGREEMENT_S):
                path = measure(point, mode, dataset=dataset, sweep=info)
        except JobMustEnd:
            raise
        except Exception as err:  # noqa: BLE001 - measure() recorded it (or PeerFailed: another rank's); the sweep goes on
            say(config, f"point failed: {type(err).__name__}: {err}")
            rows.append({**row, "status": "failed"})
            continue
        if path is None:  # not the main process: it writes no record
            continue
        paths.append(path)
        m = read_record(path)["metrics"]
        rows.append({**row, "status": "complete", "loader_only_img_s": m["loader_only"]["images_per_s"]["median"],
                     "end_to_end_img_s": m["end_to_end"]["images_per_s"]["median"], "model_only_img_s": m["model_only"]["images_per_s"]["median"],
                     "stall_fraction": m["stall_fraction"]})
    import pandas as pd  # the table only: a throughput point runs without pandas (bench.gpucheck on a bare machine)

    notice(mode.is_main, f"sweep {sweep_id} (medians):\n" + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    notice(mode.is_main, f"records under {Path(config.out) / 'records'}")
    return paths


def run(config: RunConfig, mode: Mode | None = None) -> Path | list[Path] | None:
    """One point, or a sweep's points, in ``mode`` (default: the config's); records are written by the main process only."""
    if mode is None:
        with running_mode(config) as mode:
            return run(config, mode)
    axes = config.sweep_axes()
    if axes is None:
        return measure(config, mode)
    return run_sweep(config, mode, axes)

