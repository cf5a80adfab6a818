"""One config object per run (ffcv-imagenet's pattern): every setting of a run, saved in its
record, loadable from a JSON or YAML file with unknown keys rejected.
"""

from __future__ import annotations

import dataclasses
import json
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
FFCV_WRITE_MODES = ("raw", "jpg")
FFCV_RESIZE_RULES = ("paper", "max-side")

# The paper's recipe does not leave its flat start within a CPU's budget on the embedded data:
# with N(0, 0.01) weights the loss stays at chance for thousands of steps, and lr 0.01 with 10
# classes blows fc8 up. The embedded-cpu preset changes only what it must, and says so in the
# record: He initialisation, batch 32, lr 0.005, 3 epochs. Any of these given explicitly wins.
EMBEDDED_CPU_PRESET: dict[str, Any] = {"init": "he", "batch_size": 32, "lr": 0.005, "epochs": 3}


def default_cache_dir() -> str:
    return os.environ.get("ALEXNET_BENCH_CACHE", str(Path.home() / ".cache" / "alexnet-bench"))


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
    ten_crop: bool = True
    # DALI pipeline options (pipelines/dali_pipeline.py)
    dali_decoder: str = "auto"  # auto: mixed (nvJPEG) on a CUDA device DALI sees, else cpu
    dali_hw_decoder_load: float = 0.65
    dali_prefetch_depth: int = 2

    # FFCV pipeline options (pipelines/ffcv_pipeline.py)
    ffcv_write_mode: str = "raw"
    ffcv_jpeg_quality: int = 90
    ffcv_resize_rule: str = "paper"
    ffcv_max_side: int = 512
    ffcv_os_cache: bool = True
    ffcv_batches_ahead: int = 3
    ffcv_compile: bool = True

    # Execution
    workers: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    device: str = "auto"
    mp_devices: str = ""  # model-parallel: "cuda:0,cuda:1"; empty: two GPUs if present, else one shared (emulated)
    nproc: str = "auto"  # data-parallel processes: a number, or auto (one per GPU; 2 on a CPU)
    batch_scope: str = "global"  # data-parallel: batch_size is the global batch, or per-rank
    seed: int = 0
    out: str = "results"
    resume: str = ""
    progress: bool = True

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
        # FFCV pipeline options
        need(self.ffcv_write_mode in FFCV_WRITE_MODES, f"--ffcv-write-mode {self.ffcv_write_mode!r} is not one of: {', '.join(FFCV_WRITE_MODES)}")
        need(1 <= self.ffcv_jpeg_quality <= 100, f"--ffcv-jpeg-quality must be in [1, 100], not {self.ffcv_jpeg_quality}")
        need(self.ffcv_resize_rule in FFCV_RESIZE_RULES, f"--ffcv-resize-rule {self.ffcv_resize_rule!r} is not one of: {', '.join(FFCV_RESIZE_RULES)}")
        need(256 <= self.ffcv_max_side <= 16384, f"--ffcv-max-side must be in [256, 16384], not {self.ffcv_max_side}")
        need(self.ffcv_batches_ahead >= 1, f"--ffcv-batches-ahead must be at least 1, not {self.ffcv_batches_ahead}")

    @classmethod
    def with_preset(cls, explicit: dict[str, Any], *, source: str = "config") -> "RunConfig":
        """A config from the settings given explicitly, the rest from the preset they name (or imply), then the defaults."""
        config = cls.from_dict(explicit, source=source)
        preset = config.preset
        if preset == "auto":
            preset = "embedded-cpu" if config.embedded else "paper"
        values = EMBEDDED_CPU_PRESET if preset == "embedded-cpu" else {}
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

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            text = path.read_text()
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
        return cls.from_dict(data, source=str(path))
