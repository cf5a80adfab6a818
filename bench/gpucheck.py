"""``python -m bench.gpucheck`` (``nox -s gpu``): one command that proves every GPU path, then
prints one pass/fail table with the figures.

It runs, with ``python -m bench.run`` in subprocesses writing into ``--out`` (``results/`` by
default, where ``python -m bench.report`` reads records):

- the ``gpu``-marked tests (when pytest and the tests are here);
- a throughput point of every installed pipeline on the GPU, and the model-only goal point
  (AlexNet, bf16, channels-last, batch 256: the rate a data pipeline must feed; the goal is
  15,000 images/s on one H100);
- an accuracy run of 2 short epochs, the second one resumed from the first's checkpoint;
- the relu-tanh harness on the GPU;
- with two GPUs: model-parallel on both (not emulated) and NCCL data-parallel, per pipeline;

and checks in the records they wrote: DALI's decoder is ``mixed``, FFCV works on the device,
the nvJPEG ceiling is there, the stall fraction and the model-only rate are there, two-GPU
model-parallel is not emulated, data-parallel's backend is ``nccl``.

It needs only torch, torchvision, numpy, pillow, tqdm and psutil: DALI, FFCV, pandas,
matplotlib or pytest, when missing, are named and what needs them is skipped. Without a usable
GPU it says so in one line and exits 2. Exit 0: every check passed (skips allowed); 1: one failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

PROG = "python -m bench.gpucheck"
MODEL_ONLY_GOAL = 15_000  # images/s: AlexNet training, one H100, bf16, channels-last, batch 256
GOAL_ARGS = ("--precision", "bf16", "--channels-last", "--batch-size", "256")
OPTIONAL = {"DALI": "nvidia.dali", "FFCV": "ffcv", "pandas": "pandas", "matplotlib": "matplotlib", "pytest": "pytest"}
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Check:
    """One row of the table: ``ok`` True (pass), False (fail) or None (skipped, ``note`` says why)."""

    what: str
    ok: bool | None
    figure: str = ""
    note: str = ""


def rate(phase: dict | None) -> float | None:
    try:
        return float(phase["images_per_s"]["median"])
    except (KeyError, TypeError, ValueError):
        return None


def label(record: dict) -> str:
    mode = record.get("mode", {})
    what = record.get("pipeline", {}).get("name") or record.get("model", {}).get("name") or ""
    return f"{record.get('harness')} {what} {mode.get('name', '')} x{mode.get('world_size', 1)}".strip()


def record_checks(record: dict) -> list[Check]:
    """What a GPU run's record must show (pure logic: also checked on CPU-made records by the tests)."""
    name = label(record)
    mode = record.get("mode", {})
    devices = mode.get("devices", [])
    checks = [Check(f"{name}: complete", record.get("status") == "complete", note=str(record.get("error") or "")),
              Check(f"{name}: on the GPU", bool(devices) and all(d.startswith("cuda") for d in devices), ", ".join(devices))]
    if mode.get("name") == "model-parallel" and torch.cuda.device_count() >= 2:
        checks.append(Check(f"{name}: two GPUs, not emulated", mode.get("emulated") is False, ", ".join(mode.get("towers", []))))
    if mode.get("name") == "data-parallel":
        checks.append(Check(f"{name}: backend nccl", mode.get("backend") == "nccl", str(mode.get("backend"))))
    if record.get("harness") != "throughput":
        return checks
    pipeline = record.get("pipeline", {})
    metrics = record.get("metrics", {})
    precision = record.get("provenance", {}).get("compute", {}).get("precision", "fp32")
    if pipeline.get("name") == "dali":
        checks.append(Check(f"{name}: DALI decoder mixed", pipeline.get("decoder") == "mixed", str(pipeline.get("decoder"))))
    if pipeline.get("name") == "ffcv":
        on_device = str(pipeline.get("on_device", ""))
        checks.append(Check(f"{name}: FFCV on the device", on_device.startswith("ToDevice"), on_device))
    nvjpeg = rate(metrics.get("decode_ceiling", {}).get("nvjpeg"))
    checks.append(Check(f"{name}: nvJPEG ceiling present", nvjpeg is not None, f"{nvjpeg:.0f} img/s" if nvjpeg else "",
                        str(metrics.get("decode_ceiling", {}).get("nvjpeg", {}).get("skipped", ""))))
    model = rate(metrics.get("model_only"))
    checks.append(Check(f"{name}: model-only rate present", model is not None, f"{model:.0f} img/s ({precision})" if model else ""))
    stall = metrics.get("stall_fraction")
    end = rate(metrics.get("end_to_end"))
    checks.append(Check(f"{name}: stall fraction present", isinstance(stall, (int, float)),
                        f"{stall:.3f} (end-to-end {end:.0f} img/s)" if isinstance(stall, (int, float)) and end else ""))
    return checks


def goal_check(record: dict) -> Check:
    """The model-only goal: a verdict on an H100 at the goal's settings, the figure alone elsewhere."""
    model = rate(record.get("metrics", {}).get("model_only"))
    gpus = record.get("provenance", {}).get("hardware", {}).get("gpus", [])
    compute = record.get("provenance", {}).get("compute", {})
    figure = f"{model:.0f} img/s on {gpus[0] if gpus else 'no GPU'}" if model else ""
    what = f"model-only goal >= {MODEL_ONLY_GOAL:,} img/s (H100, bf16, channels-last, batch 256)"
    settings = compute.get("precision") == "bf16" and compute.get("channels_last") and record.get("batch_size") == 256
    if model is None or not settings:
        return Check(what, False, figure, "no model-only figure at the goal's settings")
    if not any("H100" in g for g in gpus):
        return Check(what, None, figure, "not an H100: the figure is shown, without a verdict")
    return Check(what, model >= MODEL_ONLY_GOAL, figure)


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (nvidia) is missing
        return False


def missing_libraries() -> list[str]:
    return [name for name, module in OPTIONAL.items() if not installed(module)]


def records_in(out: Path) -> set[Path]:
    return set((out / "records").glob("*.json"))


def bench_run(args: list[str], out: Path, timeout_s: float) -> tuple[int, str, list[dict]]:
    """``python -m bench.run ARGS --out OUT``: exit status, last line of stderr, the records it wrote."""
    before = records_in(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    try:
        done = subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(out), "--no-progress"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
        code, err = done.returncode, (done.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        code, err = 124, f"timed out after {timeout_s:.0f} s"
    new = sorted(records_in(out) - before)
    return code, err, [json.loads(p.read_text()) for p in new]


def jobs(pipelines: list[str], gpus: int) -> list[tuple[str, list[str]]]:
    """(label, bench.run arguments) of every run the check makes."""
    out = [(f"throughput {p}", ["--harness", "throughput", "--pipeline", p, "--device", "cuda"]) for p in pipelines]
    out.append(("model-only goal point", ["--harness", "throughput", "--pipeline", "torchvision", "--device", "cuda", *GOAL_ARGS]))
    out.append(("relu-tanh", ["--harness", "relu-tanh", "--device", "cuda", "--epochs", "2", "--relu-tanh-lrs", "0.01"]))
    if gpus >= 2:
        for p in pipelines:
            out.append((f"throughput {p} model-parallel", ["--harness", "throughput", "--pipeline", p, "--device", "cuda", "--mode", "model-parallel"]))
            out.append((f"throughput {p} data-parallel", ["--harness", "throughput", "--pipeline", p, "--device", "cuda",
                                                          "--mode", "data-parallel", "--nproc", "2"]))
    return out


def accuracy_with_resume(out: Path, timeout_s: float) -> list[Check]:
    """Two short epochs, the second resumed from the first's checkpoint."""
    common = ["--harness", "accuracy", "--device", "cuda", "--steps-per-epoch", "5", "--no-ten-crop"]
    code, err, records = bench_run([*common, "--epochs", "1"], out, timeout_s)
    if code or not records:
        return [Check("accuracy: first epoch", False, note=err)]
    checkpoint = records[0].get("checkpoint", "")
    code, err, resumed = bench_run([*common, "--epochs", "2", "--resume", checkpoint], out, timeout_s)
    if code or not resumed:
        return [Check("accuracy: resumed second epoch", False, note=err)]
    epochs = resumed[0].get("curves", {}).get("epoch", [])
    checks = record_checks(resumed[0])
    top1 = resumed[0].get("metrics", {}).get("top1_err_centre")
    checks.append(Check("accuracy: resumed to 2 epochs", epochs == [1, 2], f"top-1 error {top1:.3f}" if isinstance(top1, float) else "", f"epochs {epochs}"))
    return checks


def gpu_tests() -> Check:
    if not installed("pytest"):
        return Check("gpu-marked tests", None, note="pytest is not installed")
    if not (REPO / "tests").is_dir():
        return Check("gpu-marked tests", None, note="no tests/ folder here")
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"], cwd=REPO,
                          capture_output=True, text=True)
    summary = (done.stdout.strip().splitlines() or [""])[-1]
    return Check("gpu-marked tests", done.returncode == 0, summary, "" if done.returncode == 0 else "run: pytest -m gpu tests")


def table(checks: list[Check]) -> str:
    rows = [("result", "check", "figure", "note")] + [
        ("pass" if c.ok else "skip" if c.ok is None else "FAIL", c.what, c.figure, c.note) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default="results", help="where the records go (default: results, where python -m bench.report reads)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the gpu-marked tests")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds each run may take (default: 300)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        from bench.driver import unusable_gpus

        print(f"{PROG}: no usable CUDA GPU here ({unusable_gpus() or 'torch sees none'}): nothing to check", file=sys.stderr)
        return 2
    from pipelines import available_pipelines

    out = Path(args.out)
    started = time.perf_counter()
    missing = missing_libraries()
    checks = [Check(f"{name} installed", None, note="missing: what needs it is skipped") for name in missing]
    pipelines = available_pipelines()
    gpus = torch.cuda.device_count()
    if not args.skip_tests:
        checks.append(gpu_tests())
    for what, run_args in jobs(pipelines, gpus):
        code, err, records = bench_run(run_args, out, args.timeout)
        if code or not records:
            checks.append(Check(what, False, note=err or f"exit {code}, no record"))
            continue
        for record in records:
            checks.extend(record_checks(record))
        if what == "model-only goal point":
            checks.append(goal_check(records[-1]))
    checks.extend(accuracy_with_resume(out, args.timeout))
    if gpus < 2:
        checks.append(Check("two-GPU model-parallel and NCCL data-parallel", None, note=f"{gpus} GPU here"))
    print(table(checks))
    failed = sum(c.ok is False for c in checks)
    print(f"{len(checks)} checks, {failed} failed, on {gpus}x {torch.cuda.get_device_name(0)}, in {time.perf_counter() - started:.0f} s; "
          f"records under {out / 'records'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
