"""One config object per run (ffcv-imagenet's pattern): every setting of a run, saved in its
record, loadable from a JSON or YAML file with unknown keys rejected.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.errors import UserError

HARNESSES = ("accuracy", "throughput", "relu-tanh")
BATCH_SCOPES = ("global", "per-rank")
MODES = ("single", "model-parallel", "data-parallel")
LIGHTING_STATS = ("auto", "computed", "imagenet")
EMBEDDED = "embedded"
PRESETS_CHOICES = ("auto", "paper", "embedded-cpu")
PRECISIONS = ("fp32", "tf32", "bf16")  # issue 13 (bench/precision.py)
FFCV_WRITE_MODES = ("auto", "raw", "jpg")  # auto (issue 15): raw when it fits in a share of the free disk, else jpg
UPDATE_RULES = ("paper", "torch")  # issue 12: bench/optim.py
# issue 12: what runs saved before update_rule and decay_biases existed trained with; a --rerun of
# their record or a --resume of their checkpoint keeps it (the optimizer state has one group then).
BEFORE_ISSUE_12 = {"update_rule": "torch", "decay_biases": True}
FFCV_RESIZE_RULES = ("paper", "max-side")

# The paper's recipe does not leave its flat start within a CPU's budget on the embedded data:
# with N(0, 0.01) weights the loss stays at chance for thousands of steps, and lr 0.01 with 10
# classes blows fc8 up. The embedded-cpu preset changes only what it must, and says so in the
# record: He initialisation, batch 32, lr 0.005, 3 epochs. Any of these given explicitly wins.
EMBEDDED_CPU_PRESET: dict[str, Any] = {"init": "he", "batch_size": 32, "lr": 0.005, "epochs": 3}

# What a harness changes from the preset unless given explicitly. relu-tanh: the paper's
# "four-layer CNN" (issue 12: cuda-convnet's conv-conv-local-local net without normalisation;
# Figure 1's own net was never published), a budget of its own (epochs 0: RELU_TANH_EPOCHS)
# and no regularisation.
HARNESS_DEFAULTS: dict[str, dict[str, Any]] = {"relu-tanh": {"model": "conv_local_13pct", "epochs": 0, "weight_decay": 0.0}}


def parse_list(text: str, kind: type, flag: str) -> list:
    """A comma-separated flag value as a list of ``kind`` ('' gives []); a UserError naming the flag otherwise."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        values = [kind(item) for item in items]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated {kind.__name__} values") from None
    return values


def default_cache_dir() -> str:
    return os.environ.get("ALEXNET_BENCH_CACHE", str(Path.home() / ".cache" / "alexnet-bench"))


# issue 13: a data-parallel job's ranks share the machine's cores.
def local_world_size() -> int:
    """Processes of this job on this machine (torchrun's LOCAL_WORLD_SIZE; 1 outside a launched job)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def cores_per_process() -> int:
    """The cores this process may use (its affinity) divided among the job's local processes, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // local_world_size())


@dataclass
class RunConfig:
    # What to run
    preset: str = "auto"  # auto: embedded-cpu on the embedded data, paper elsewhere
    harness: str = "accuracy"
    pipeline: str = "torchvision"
    mode: str = "single"
    model: str = "alexnet"
    # Data
    data: str = EMBEDDED
    embedded_classes: int = 10
    embedded_train_per_class: int = 260
    embedded_val_per_class: int = 50
    cache_dir: str = dataclasses.field(default_factory=default_cache_dir)
    strict: bool = False  # a bad file is an error instead of being left out
    max_pixels: int = 89_478_485  # larger images are left out as possible decompression bombs (PIL's own limit)
    # The network (the paper's by default)
    activation: str = "relu"
    lrn: str = "authors"
    crop: int = 227
    init: str = "paper"
    # Augmentation (the paper's by default)
    flip_prob: float = 0.5
    lighting_sigma: float = 0.1
    lighting_stats: str = "auto"
    # Training (the paper's recipe by default)
    epochs: int = 0  # 0: the paper's 90
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_patience: int = 2
    max_lr_drops: int = 3
    steps_per_epoch: int = 0  # 0: the whole training split every epoch
    # issue 12: the update rule and bias decay (bench/optim.py, bench.train.make_optimizer)
    update_rule: str = "paper"  # paper: v <- 0.9v - wd*eps*w - eps*g, w <- w + v; torch: torch.optim.SGD's form
    decay_biases: bool = False  # the reference implementations decay weights only
    ten_crop: bool = True
    # DALI pipeline options (pipelines/dali_pipeline.py)
    dali_decoder: str = "auto"  # auto: mixed (nvJPEG) on a CUDA device DALI sees, else cpu
    dali_hw_decoder_load: float = 0.65
    dali_prefetch_depth: int = 2
    dali_feed_workers: int = 1

    # FFCV pipeline options (pipelines/ffcv_pipeline.py)
    ffcv_write_mode: str = "auto"  # issue 15: was "raw", which cannot fit ImageNet on most disks
    ffcv_jpeg_quality: int = 90
    ffcv_resize_rule: str = "paper"
    ffcv_max_side: int = 512
    ffcv_os_cache: bool = True
    ffcv_batches_ahead: int = 3
    ffcv_compile: bool = True

    # Execution
    workers: int = dataclasses.field(default_factory=cores_per_process)  # issue 13: shared among local ranks
    device: str = "auto"
    mp_devices: str = ""  # model-parallel: "cuda:0,cuda:1"; empty: two GPUs if present, else one shared (emulated)
    nproc: str = "auto"  # data-parallel processes: a number, or auto (one per GPU; 2 on a CPU)
    batch_scope: str = "global"  # data-parallel: batch_size is the global batch, or per-rank
    seed: int = 0
    out: str = "results"
    resume: str = ""
    progress: bool = True
    # Throughput harness (bench/harness/throughput.py); 0: chosen for the device, recorded
    warmup_batches: int = 0
    batches_per_repeat: int = 0
    loader_batches_per_repeat: int = 0
    repeats: int = 3
    ceiling_images: int = 256
    sweep_pipelines: str = ""
    sweep_workers: str = ""
    sweep_batch_sizes: str = ""
    # Issue 14: stock baselines and cores to feed (bench/harness/baselines.py, bench/harness/feeding.py)
    baselines: bool = False  # also measure the pipeline's library's stock loader, loader-only
    feed_target: float = 0.0  # img/s a model must be fed (e.g. 15000: one H100); 0: the measured model-only rate only
    # ReLU-vs-tanh harness (bench/harness/relu_tanh.py)
    relu_tanh_lrs: str = "0.0003,0.001,0.003,0.01"
    relu_tanh_sweep_iterations: int = 0
    relu_tanh_target_error: float = 0.25
    # issue 12: the finer Figure 1 measure and the grid's extension at its edge
    relu_tanh_window: int = 50
    relu_tanh_grid_extensions: int = 3
    # issue 13: how the model computes (bench/precision.py); the paper's fp32 by default
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserError(msg)

        need(self.preset in PRESETS_CHOICES, f"--preset {self.preset!r} is not one of: {', '.join(PRESETS_CHOICES)}")
        need(self.harness in HARNESSES, f"--harness {self.harness!r} is not one of: {', '.join(HARNESSES)}")
        need(self.mode in MODES, f"--mode {self.mode!r} is not one of: {', '.join(MODES)}")
        need(self.lighting_stats in LIGHTING_STATS, f"--lighting-stats {self.lighting_stats!r} is not one of: {', '.join(LIGHTING_STATS)}")
        need(self.batch_scope in BATCH_SCOPES, f"--batch-scope {self.batch_scope!r} is not one of: {', '.join(BATCH_SCOPES)}")
        need(self.nproc == "auto" or (self.nproc.isdigit() and int(self.nproc) >= 1), f"--nproc must be a whole number of at least 1 (or auto), not {self.nproc!r}")
        need(self.crop in (224, 227), f"--crop must be 227 or 224, not {self.crop}")
        need(self.epochs >= 0, f"--epochs must be at least 1 (or 0 for the default), not {self.epochs}")
        need(self.batch_size >= 1, f"--batch-size must be at least 1, not {self.batch_size}")
        need(self.workers >= 0, f"--workers must be 0 or more, not {self.workers}")
        need(self.lr > 0, f"--lr must be positive, not {self.lr}")
        need(self.steps_per_epoch >= 0, f"--steps-per-epoch must be 0 or more, not {self.steps_per_epoch}")
        need(self.max_lr_drops >= 0, f"--max-lr-drops must be 0 or more, not {self.max_lr_drops}")
        # issue 12
        need(self.relu_tanh_window >= 1, f"--relu-tanh-window must be at least 1, not {self.relu_tanh_window}")
        need(self.relu_tanh_grid_extensions >= 0, f"--relu-tanh-grid-extensions must be 0 or more, not {self.relu_tanh_grid_extensions}")
        need(self.update_rule in UPDATE_RULES, f"--update-rule {self.update_rule!r} is not one of: {', '.join(UPDATE_RULES)}")
        need(self.embedded_classes >= 2, f"--embedded-classes must be at least 2, not {self.embedded_classes}")
        need(self.embedded_train_per_class >= 1, "--embedded-train-per-class must be at least 1")
        need(self.embedded_val_per_class >= 1, "--embedded-val-per-class must be at least 1")
        need(0.0 <= self.flip_prob <= 1.0, f"--flip-prob must be in [0, 1], not {self.flip_prob}")
        need(self.max_pixels >= 1, f"--max-pixels must be at least 1, not {self.max_pixels}")
        need(self.lighting_sigma >= 0, f"--lighting-sigma must be 0 or more, not {self.lighting_sigma}")
        # DALI pipeline options
        need(self.dali_decoder in ("auto", "mixed", "cpu"), f"--dali-decoder {self.dali_decoder!r} is not one of: auto, mixed, cpu")
        need(0.0 <= self.dali_hw_decoder_load <= 1.0, f"--dali-hw-decoder-load must be in [0, 1], not {self.dali_hw_decoder_load}")
        need(self.dali_prefetch_depth >= 1, f"--dali-prefetch-depth must be at least 1, not {self.dali_prefetch_depth}")
        need(self.dali_feed_workers >= 1, f"--dali-feed-workers must be at least 1, not {self.dali_feed_workers}")
        # Harness settings
        for name in ("warmup_batches", "batches_per_repeat", "loader_batches_per_repeat", "relu_tanh_sweep_iterations"):
            need(getattr(self, name) >= 0, f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}")
        need(self.repeats >= 3, f"--repeats must be at least 3 (a median and a spread need three), not {self.repeats}")
        need(self.ceiling_images >= 1, f"--ceiling-images must be at least 1, not {self.ceiling_images}")
        need(0.0 < self.relu_tanh_target_error < 1.0, f"--relu-tanh-target-error must be in (0, 1), not {self.relu_tanh_target_error}")
        # issue 13: precision
        need(self.precision in PRECISIONS, f"--precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        self.sweep_axes()  # parses, or names the bad flag
        # Issue 14: stock baselines and cores to feed
        need(self.feed_target >= 0 and math.isfinite(self.feed_target), f"--feed-target must be a rate of 0 or more images/s, not {self.feed_target}")
        if self.harness != "throughput":
            need(not self.baselines, "--baselines is for --harness throughput only")
        self.relu_tanh_lr_grid()
        if self.harness != "throughput":
            for name in ("sweep_pipelines", "sweep_workers", "sweep_batch_sizes"):
                need(not getattr(self, name), f"--{name.replace('_', '-')} is for --harness throughput only")
        # FFCV pipeline options
        need(self.ffcv_write_mode in FFCV_WRITE_MODES, f"--ffcv-write-mode {self.ffcv_write_mode!r} is not one of: {', '.join(FFCV_WRITE_MODES)}")
        need(1 <= self.ffcv_jpeg_quality <= 100, f"--ffcv-jpeg-quality must be in [1, 100], not {self.ffcv_jpeg_quality}")
        need(self.ffcv_resize_rule in FFCV_RESIZE_RULES, f"--ffcv-resize-rule {self.ffcv_resize_rule!r} is not one of: {', '.join(FFCV_RESIZE_RULES)}")
        need(256 <= self.ffcv_max_side <= 16384, f"--ffcv-max-side must be in [256, 16384], not {self.ffcv_max_side}")
        need(self.ffcv_batches_ahead >= 1, f"--ffcv-batches-ahead must be at least 1, not {self.ffcv_batches_ahead}")

    def sweep_axes(self) -> dict[str, list] | None:
        """The throughput sweep's axes (pipeline, workers, batch size), or None when no --sweep-* is given.

        An axis not given takes the single value of --pipeline, --workers or --batch-size;
        ``--sweep-pipelines installed`` is every pipeline installed here.
        """
        if not (self.sweep_pipelines or self.sweep_workers or self.sweep_batch_sizes):
            return None
        pipelines = parse_list(self.sweep_pipelines, str, "--sweep-pipelines") or [self.pipeline]
        workers = parse_list(self.sweep_workers, int, "--sweep-workers") or [self.workers]
        batch_sizes = parse_list(self.sweep_batch_sizes, int, "--sweep-batch-sizes") or [self.batch_size]
        if "installed" in pipelines and len(pipelines) > 1:
            raise UserError(f"--sweep-pipelines {self.sweep_pipelines!r}: 'installed' stands alone")
        if min(workers) < 0:
            raise UserError(f"--sweep-workers {self.sweep_workers!r}: worker counts must be 0 or more")
        if min(batch_sizes) < 1:
            raise UserError(f"--sweep-batch-sizes {self.sweep_batch_sizes!r}: batch sizes must be at least 1")
        return {"pipeline": pipelines, "workers": workers, "batch_size": batch_sizes}

    def relu_tanh_lr_grid(self) -> list[float]:
        """The learning rates the relu-tanh harness tries for each activation, ascending."""
        lrs = parse_list(self.relu_tanh_lrs, float, "--relu-tanh-lrs")
        if not lrs or not all(0 < lr < math.inf for lr in lrs):
            raise UserError(f"--relu-tanh-lrs {self.relu_tanh_lrs!r}: give one or more positive learning rates, comma-separated")
        return sorted(set(lrs))

    @classmethod
    def with_preset(cls, explicit: dict[str, Any], *, source: str = "config") -> "RunConfig":
        """A config from the settings given explicitly, the rest from the preset they name (or imply), then the defaults."""
        config = cls.from_dict(explicit, source=source)
        preset = config.preset
        if preset == "auto":
            preset = "embedded-cpu" if config.embedded else "paper"
        values = EMBEDDED_CPU_PRESET if preset == "embedded-cpu" else {}
        values = {**values, **HARNESS_DEFAULTS.get(config.harness, {})}
        return cls.from_dict({**values, **explicit, "preset": preset}, source=source)

    def pipeline_extra(self) -> dict[str, Any]:
        """The pipeline-specific settings (``dali_*``, ``ffcv_*``) for ``PipelineOptions.extra``, prefix removed."""
        prefix = self.pipeline + "_"
        return {f.name[len(prefix) :]: getattr(self, f.name) for f in fields(self) if f.name.startswith(prefix)}

    @property
    def embedded(self) -> bool:
        return self.data == EMBEDDED

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}")
        return cls(**d)

    @staticmethod
    def read_file(path: str | Path) -> dict[str, Any]:
        """The settings a JSON or YAML config file names, as written (bench.run types and checks them as flags)."""
        path = Path(path)
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise UserError(f"cannot parse config {path}: not a text file") from None
        except OSError as err:
            raise UserError(f"cannot read config {path}: {err.strerror}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as err:  # noqa: BLE001 - any parse failure is the user's file
            raise UserError(f"cannot parse config {path}: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise UserError(f"config {path} must be a mapping of settings")
        return data
