"""``python -m bench.run``: train and evaluate AlexNet through one input pipeline, write a record.

With no flags: the accuracy harness on the embedded dataset, torchvision pipeline, one device.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, NoReturn, Sequence

from bench.config import (BATCH_SCOPES, BEFORE_ISSUE_12, EMBEDDED, EMBEDDED_CPU_PRESET, HARNESS_DEFAULTS, HARNESSES, LIGHTING_STATS, MODES,
                          PRECISIONS, PRESETS_CHOICES, UPDATE_RULES, RunConfig)
from bench.errors import UserError

PROG = "python -m bench.run"
PRECEDENCE = ("Each setting comes from the first of: the flags given, then --config FILE, then the checkpoint (--resume) "
              "or record (--rerun) being continued or run again, then the preset, then the defaults.")

# flag help, in the order --help shows them; every RunConfig field has one
HELP: dict[str, str] = {
    "preset": "auto (embedded-cpu on the embedded data, paper elsewhere), paper (the paper's recipe as is), "
    "embedded-cpu (He init, batch 32, lr 0.005, 3 epochs: what trains on a CPU in minutes); flags given win",
    "harness": "what to measure: accuracy (train, then top-1/top-5 error), throughput (decode ceiling, loader-only, "
    "model-only and end-to-end images/s, stall fraction), relu-tanh (the paper's Figure 1: iterations to 25%% training error)",
    "pipeline": "input pipeline: torchvision, dali or ffcv",
    "mode": "execution mode: single (one device), model-parallel (the paper's two towers), data-parallel (DDP)",
    "model": "network: alexnet (the paper's), alexnet_torchvision (torchvision's variant); for relu-tanh's 32x32 images: "
    "conv_local_13pct (the relu-tanh default: cuda-convnet's conv-conv-local-local net, the paper's 'four-layer CNN' of section 3.3), "
    "conv_local_11pct (the same with response normalisation) or convnet4 (cuda-convnet's layers-18pct net: three hidden layers)",
    "data": f"dataset root in ImageFolder layout (train/<class>/*, val/<class>/*), or '{EMBEDDED}' for the generated default; "
    "relu-tanh: CIFAR-10 in torchvision's format (a folder holding cifar-10-batches-py/), any ImageFolder root (decoded at 32 px, "
    "held in memory), or embedded for a CIFAR-sized default",
    "embedded_classes": "classes in the embedded dataset",
    "embedded_train_per_class": "training images per class in the embedded dataset",
    "embedded_val_per_class": "validation images per class in the embedded dataset",
    "strict": "stop with an error naming the first bad file instead of leaving bad files out",
    "max_pixels": "images with more pixels are left out as possible decompression bombs",
    "cache_dir": "where manifests, colour statistics and the embedded dataset are kept (env ALEXNET_BENCH_CACHE, else ~/.cache/alexnet-bench)",
    "activation": "nonlinearity of every layer: relu or tanh (relu-tanh runs both)",
    "lrn": "LRN convention: authors (alpha/n, as cuda-convnet, Caffe and torch) or paper (the formula as printed)",
    "crop": "input size: 227 (feature maps 55-27-13-13-13-6 without padding) or 224 (conv1 padded by 2)",
    "init": "weight init: paper (N(0,0.01), bias 1 in conv2/4/5, fc6/7), caffe (bvlc_alexnet's) or he (not the paper's)",
    "flip_prob": "probability of a horizontal reflection of a training crop",
    "lighting_sigma": "std of the PCA lighting coefficients alpha (the paper: 0.1; 0 turns lighting off)",
    "lighting_stats": "eigen-statistics for lighting and normalisation: auto (ImageNet's constants for ImageNet, else computed), computed, imagenet",
    "epochs": "training epochs (0: the paper's 90); relu-tanh: the most epochs each activation trains (0: 40)",
    "batch_size": "images per step (global batch across all devices)",
    "lr": "initial learning rate (relu-tanh: see --relu-tanh-lrs)",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "lr_patience": "epochs without a lower validation error before the learning rate is divided by 10",
    "max_lr_drops": "the most times the learning rate is divided by 10",
    # issue 12: update rule and bias decay
    "update_rule": "paper (v <- 0.9v - 0.0005*lr*w - lr*grad, w <- w + v: the paper's and Caffe's form; the velocity carries over a "
    "learning-rate drop) or torch (torch.optim.SGD: lr outside the velocity, so a drop also divides the carried velocity by 10)",
    "decay_biases": "apply weight decay to biases too (cuda-convnet and Caffe decay weights only)",
    "steps_per_epoch": "stop each epoch after this many steps (0: the whole training split)",
    "ten_crop": "also evaluate with the paper's ten-view average at the end",
    # DALI pipeline options
    "dali_decoder": "DALI's JPEG decoder: auto (mixed when --device is CUDA and DALI sees a GPU, else cpu), "
    "mixed (nvJPEG on the GPU; an error without one) or cpu (libjpeg-turbo, every operator on the CPU)",
    "dali_hw_decoder_load": "DALI mixed decoder: share of the JPEG work given to the hardware decoder (A100/H100), 0-1",
    "dali_prefetch_depth": "DALI: batches prepared ahead of the one in use (prefetch_queue_depth, also the training feed's)",
    "dali_feed_workers": "DALI training: Python worker processes that read each batch's files and make its draws "
    "(parallel external_source); 1 keeps up with the CPU decoder, raise it when nvJPEG outruns it",

    # FFCV pipeline options
    "ffcv_write_mode": "how FFCV's .beton stores images: auto (raw when it takes at most half the cache's free disk, else jpg; "
    "one line says which), raw (uint8 pixels: exact, FFCV's default, 192 KiB an image) or jpg (JPEG at --ffcv-jpeg-quality: about 8x smaller, lossy)",
    "ffcv_jpeg_quality": "JPEG quality of the .beton's images (1-100; FFCV's default 90)",
    "ffcv_resize_rule": "what the .beton stores: paper (the paper's 256x256 preprocessing, done once) or max-side "
    "(the image as is, longer side capped at --ffcv-max-side; the 256 preprocessing then happens when loading, with OpenCV)",
    "ffcv_max_side": "longer-side cap of stored images under --ffcv-resize-rule max-side",
    "ffcv_os_cache": "read the .beton through the OS page cache (FFCV's default) rather than FFCV's own process cache",
    "ffcv_batches_ahead": "batches FFCV prepares ahead of the one in use",
    "ffcv_compile": "compile FFCV's pipeline with numba (--no-ffcv-compile runs the same pipeline interpreted: slow, for debugging)",

    "workers": "loader worker processes or threads, per process; by default the cores this process may use, divided among a data-parallel job's local processes",
    "device": "auto (CUDA if present, else CPU), cpu, cuda or cuda:N",
    "mp_devices": "model-parallel: the two towers' devices, e.g. cuda:0,cuda:1 (not given: two GPUs if present, else both on --device: emulated)",
    "nproc": "data-parallel: processes to start with torchrun (auto: one per GPU, 2 on a CPU)",
    "batch_scope": "data-parallel: whether --batch-size is the global batch (split over ranks) or per rank",
    "seed": "seed for sample order, augmentation, dropout and initialisation",
    "out": "results directory: records/ and checkpoints/ go under it",
    "resume": "continue the run saved in this checkpoint (its settings, unless given again here or in --config)",
    "progress": "show progress bars and per-epoch and per-phase lines; --no-progress still prints what a user must see "
                "(files left out, an emulated mode, errors, the record's path, a sweep's table)",
    # throughput harness
    "warmup_batches": "throughput: batches (or steps) run before each timed phase, not timed (0: 2 on a CPU, 10 on a GPU)",
    "batches_per_repeat": "throughput: training steps per timed repeat of the model-only and end-to-end phases (0: 3 on a CPU, 40 on a GPU)",
    "loader_batches_per_repeat": "throughput: batches per timed repeat of the loader-only phase (0: 12 on a CPU, 40 on a GPU)",
    "repeats": "throughput: timed repeats of every phase; the record keeps each, their median and spread (at least 3)",
    "ceiling_images": "throughput: training files decoded (no augmentation) per repeat of the decode ceiling",
    "sweep_pipelines": "throughput sweep: comma-separated pipelines, or 'installed'; one record per point (empty: --pipeline alone)",
    "sweep_workers": "throughput sweep: comma-separated worker counts (empty: --workers alone)",
    "sweep_batch_sizes": "throughput sweep: comma-separated batch sizes (empty: --batch-size alone)",
    # issue 14: stock baselines and cores to feed
    "baselines": "throughput: also measure the stock training loader of the pipeline's library (pytorch/examples imagenet, DALI's ResNet-50 "
    "example, ffcv-imagenet), loader-only, in the same run; the record keeps its rate and ours divided by it",
    "feed_target": "throughput: a rate in images/s the model must be fed (e.g. 15000 for AlexNet on one H100); the report turns the workers sweep "
    "into the cores each pipeline needs for it (0: the model-only rate measured only)",
    # relu-tanh harness
    "relu_tanh_lrs": "relu-tanh: comma-separated learning rates tried for each activation (the one that trains fastest is kept; --lr is not used)",
    "relu_tanh_sweep_iterations": "relu-tanh: iterations each learning rate gets before the fastest goes on alone (0: each runs until the target, the budget, or it can no longer win)",
    "relu_tanh_target_error": "relu-tanh: the training error to reach (the paper's Figure 1: 0.25)",
    # issue 12
    "relu_tanh_window": "relu-tanh: iterations in the finer measure's window (the mean minibatch error over the last this many "
    "iterations), reported beside the paper's one-epoch average so that a target reached within the first epoch is resolved",
    "relu_tanh_grid_extensions": "relu-tanh: when the chosen rate is the lowest or highest of the grid, try one more beyond it "
    "(x3 or /3), at most this many times per activation (0: the grid as given)",
    # issue 13: how the model computes
    "precision": "accuracy and throughput: fp32 (the paper's; TF32 off), tf32 (TF32 tensor cores), or bf16 (bfloat16 autocast, float32 weights)",
    "channels_last": "accuracy and throughput: weights and batches in channels-last (NHWC) memory format, what cuDNN's tensor-core kernels prefer",
}
CHOICES = {"batch_scope": BATCH_SCOPES, "preset": PRESETS_CHOICES, "harness": HARNESSES, "mode": MODES, "lighting_stats": LIGHTING_STATS, "activation": ("relu", "tanh"), "lrn": ("authors", "paper"), "crop": (227, 224), "init": ("paper", "caffe", "he"), "update_rule": UPDATE_RULES, "precision": PRECISIONS}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2, and a flag is never matched
    by a prefix of its name (a flag added later cannot change what an old command line means)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class RaisingParser(OneLineParser):
    """The flags' parser for a config file's values: an error is a UserError for the caller to name the file in."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def field_default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


def default_help(f: Field) -> str:
    """What --help says a field's default is: the field's own, and where a preset or a harness changes it, theirs."""
    value = field_default(f)
    if f.name in EMBEDDED_CPU_PRESET:
        parts = [f"{EMBEDDED_CPU_PRESET[f.name]} on the embedded data [embedded-cpu preset], {value} elsewhere [paper]"]
    else:
        parts = [str(value)] if value != "" else []
    parts += [f"--harness {harness}: {values[f.name]}" for harness, values in HARNESS_DEFAULTS.items() if f.name in values]
    return f" (default: {'; '.join(parts)})" if parts else ""


def add_field_arguments(parser: argparse.ArgumentParser, *, with_help: bool = True) -> None:
    """One flag per RunConfig field, typed and with the choices the field takes."""
    for f in fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        text = HELP[f.name] + default_help(f) if with_help else None
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
            continue
        kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
        parser.add_argument(flag, type=kind, choices=CHOICES.get(f.name), metavar=f.name.upper(), help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description=__doc__.strip().splitlines()[0] + " " + PRECEDENCE,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", metavar="FILE", help="read settings from a JSON or YAML file (keys as the flags' names, "
                        "with - or _); the settings it names count as if given as flags, and flags given here win")
    parser.add_argument("--rerun", metavar="RECORD", help="run again with every setting of this run record (flags and --config override them)")
    add_field_arguments(parser)
    return parser


FILE_KINDS = {"checkpoint": ("a checkpoint", "--resume"), "record": ("a run record", "--rerun"), "config": ("a config file", "--config")}


def refuse_wrong_kind(path: str, flag: str) -> None:
    """A UserError when ``path``, given to ``flag``, is a kind of file another flag takes."""
    from bench.checkpoint import file_kind

    kind = file_kind(path)
    if kind in FILE_KINDS and FILE_KINDS[kind][1] != flag:
        name, right = FILE_KINDS[kind]
        raise UserError(f"{flag}: {path} is {name}: use {right} {path}")


def file_settings(path: str) -> dict[str, Any]:
    """The settings a config file names (and only those), typed and checked as the flags are."""
    if Path(path).is_file():
        refuse_wrong_kind(path, "--config")
    raw = RunConfig.read_file(path)
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name in settings:
            raise UserError(f"{path}: {key!r} is given twice (as {name!r} too)")
        settings[name] = value
    unknown = sorted(set(settings) - {f.name for f in fields(RunConfig)})
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}")
    parser = RaisingParser(prog=PROG, argument_default=argparse.SUPPRESS, add_help=False)
    add_field_arguments(parser, with_help=False)
    kinds = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(RunConfig)}
    typed: dict[str, Any] = {}
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if kinds[name] == "bool":
            if not isinstance(value, bool):
                raise UserError(f"{path}: {name}: expected true or false, not {value!r}")
            typed[name] = value
            continue
        if value is None or isinstance(value, (list, dict)):
            raise UserError(f"{path}: {name}: expected one {kinds[name]} value, not {value!r}")
        try:
            typed.update(vars(parser.parse_args([flag, str(value)])))
        except UserError as err:
            raise UserError(f"{path}: {name}: {str(err).removeprefix(f'argument {flag}: ')}") from None
    return typed


def resumed_config(path: str, given: dict[str, Any]) -> RunConfig:
    """The config of a run continued from checkpoint ``path``: what is given, then the checkpoint's settings."""
    from bench.checkpoint import load_checkpoint
    from bench.harness.accuracy import epochs_for
    from bench.records import read_record, record_path

    state = load_checkpoint(path)
    if not isinstance(state.get("config"), dict) or "epoch" not in state:
        raise UserError(f"--resume: {path} is not a checkpoint of a training run (no config or epoch in it)")
    config = RunConfig.from_dict({**BEFORE_ISSUE_12, **state["config"], **given}, source=path)
    record = record_path(config.out, str(state.get("run_id", "")))
    if state["epoch"] >= epochs_for(config) and record.is_file():
        try:
            finished = read_record(record).get("status") == "complete"
        except ValueError:
            finished = False
        if finished:  # (killed after its last checkpoint but before its record, a run is still evaluated and recorded)
            raise UserError(f"--resume: {path} has trained all {state['epoch']} of its epochs and {record} is complete: nothing left to train "
                            f"(give --epochs above {state['epoch']} to train further, or --rerun {record} to run it again)")
    return config


def config_from_args(argv: Sequence[str] | None) -> RunConfig:
    """The run's config; each setting from the first of: flags, the --config file, the checkpoint or record, the preset, the defaults."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    rerun = args.pop("rerun", None)
    given = {**(file_settings(config_file) if config_file else {}), **args}
    if rerun:
        from bench.records import read_record

        if given.get("resume"):
            raise UserError("--rerun runs a recorded run again from its start and --resume continues a checkpoint: give one of them")
        if Path(rerun).is_file():
            refuse_wrong_kind(rerun, "--rerun")
        try:
            recorded = read_record(rerun)["config"]
        except (ValueError, KeyError) as err:
            raise UserError(f"--rerun: {err}") from None
        return RunConfig.from_dict({**BEFORE_ISSUE_12, **recorded, "resume": "", **given}, source=rerun)
    if given.get("resume"):
        return resumed_config(given["resume"], given)
    return RunConfig.with_preset(given)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(argv)
        from bench.harness import dispatch

        dispatch.run(config, argv)
    except UserError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    # Under torchrun, an exception is also written to the agent's error file with its time,
    # so the launcher can name the rank that failed first (a no-op otherwise).
    sys.exit(record(main)())
