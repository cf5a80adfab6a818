"""Where a result came from: code version, packages, hardware, threads."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from bench.driver import driver_version
from bench.precision import compute_settings

PACKAGES = ("torch", "torchvision", "numpy", "pillow", "nvidia-dali-cuda130", "ffcv", "numba", "opencv-python")
REPO = Path(__file__).resolve().parent.parent


def git_commit() -> dict:
    """The commit of this checkout and whether the tree has uncommitted changes ('unknown' outside git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_models() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def hardware() -> dict:
    gpus = gpu_models()
    cpu = cpu_model()
    cores = os.cpu_count() or 1
    return {
        "cpu": cpu,
        "cpu_count": cores,
        "gpus": gpus,
        "gpu_count": len(gpus),
        "cuda": torch.version.cuda if gpus else None,
        # One string that says which hardware a figure comes from; reports group by it.
        "key": f"{len(gpus)}x {gpus[0]}" if gpus else f"CPU only: {cpu} ({cores} cores)",
    }


def compute(config=None) -> dict:
    """How the model computed: the config's precision and memory format, torch's cuDNN and TF32
    switches as the run left them, the cuDNN and NVIDIA driver versions (null without a GPU)."""
    settings = {
        "precision": getattr(config, "precision", "fp32"),
        "channels_last": bool(getattr(config, "channels_last", False)),
        **compute_settings(),
        "nvidia_driver": driver_version() if torch.cuda.is_available() else None,
    }
    return settings


def provenance(seed: int, config=None) -> dict:
    """Where a result came from; ``config`` (a RunConfig) adds the precision and memory format it ran with."""
    return {
        "git": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hardware(),
        "threads": {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", "1"))},
        "seed": seed,
        "compute": compute(config),
    }
