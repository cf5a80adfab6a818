"""Why torch sees no GPU on a machine that has some: the NVIDIA driver against the CUDA torch was built for.

torch 2.14.1+cu130 and nvidia-dali-cuda130 need CUDA 13, which needs driver 580 or newer
(NVIDIA's CUDA 13.0 release notes, "CUDA Toolkit and Corresponding Driver Versions": >= 580.65.06
on Linux). With an older driver ``torch.cuda.is_available()`` is False and, without this
module, ``--device auto`` would quietly train on the CPU.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import torch

# The oldest Linux driver of each CUDA major version (NVIDIA's release notes, table 3).
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
DEV = Path("/dev")


def nvidia_smi() -> tuple[list[str], str | None]:
    """The GPUs ``nvidia-smi`` lists and the driver version it reports (([], None) without it)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return [], None
    rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if "," in line]
    return [r[0] for r in rows], (rows[0][1] if rows else None)


def device_files() -> list[str]:
    """The GPU device files (``/dev/nvidia0``, ...): present whenever the kernel driver is loaded."""
    return sorted(p.name for p in DEV.glob("nvidia[0-9]*"))


def driver_version() -> str | None:
    """The installed NVIDIA driver's version (nvidia-smi, else /proc/driver/nvidia/version), or None."""
    _, version = nvidia_smi()
    if version:
        return version
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        if word[:1].isdigit() and "." in word:
            return word
    return None


def needed_driver() -> int | None:
    """The oldest driver for the CUDA this torch was built for (None for a CPU-only build)."""
    if not torch.version.cuda:
        return None
    return MIN_DRIVER.get(int(torch.version.cuda.split(".")[0]))


def unusable_gpus() -> str | None:
    """One line saying why GPUs on this machine are not usable by torch, or None when torch uses
    them or there are none (no ``nvidia-smi`` GPU, no ``/dev/nvidia*``)."""
    if torch.cuda.is_available():
        return None
    names, version = nvidia_smi()
    files = device_files()
    if not names and not files:
        return None
    version = version or driver_version()
    seen = f"{len(names)} GPU(s) ({names[0]})" if names else f"GPU device files ({', '.join(files)})"
    needed = needed_driver()
    if needed is None:
        return (f"{seen} present but this torch {torch.__version__} is a CPU-only build: "
                "install a CUDA build of torch (see the README, 'Requirements')")
    cuda = torch.version.cuda
    if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= needed:
        return (f"{seen} present, driver {version} (CUDA {cuda.split('.')[0]} needs {needed} or newer: met), "
                f"but torch {torch.__version__} sees no GPU: check CUDA_VISIBLE_DEVICES and what nvidia-smi says")
    found = f"driver {version}" if version else "no working NVIDIA driver (nvidia-smi gave no version)"
    return (f"{seen} present but torch {torch.__version__} (CUDA {cuda}) cannot use them: {found}, "
            f"CUDA {cuda.split('.')[0]} needs driver {needed} or newer; upgrade the NVIDIA driver, "
            "or install torch and DALI built for an older CUDA (see the README, 'Requirements')")
