"""``python -m bench.suite``: the standard benchmark on the embedded data (what ``nox -s bench`` runs).

Parts, in order, each a ``python -m bench.run`` process writing its record into one results
directory (a crash in one loader cannot take the other parts down):

1. throughput for every installed pipeline in every mode this machine runs (``suite_modes``);
2. relu-tanh: the paper's Figure 1 on the CIFAR-sized embedded data;
3. a short accuracy run (two short epochs, centre crop and ten views);

then the report (``python -m bench.report``) into ``reports/`` (``<out>/report`` for ``--smoke``). The settings are
sized to finish well within 30 minutes on a 2-core CPU with three pipelines in three modes;
``--smoke`` runs every part at toy sizes (seconds each) to check the machinery. A part that
fails is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.atomic import atomic_write_json
from bench.config import MODES
from bench.records import RECORDS_DIR
from bench.run import OneLineParser

PROG = "python -m bench.suite"

# Per-part settings (flags of bench.run). Measured on a quiet 2-core CPU (torchvision, single mode):
# generating and checking the embedded data 52 s (once per cache), a throughput point 47 s (AlexNet
# steps take 1.6 s there), relu-tanh 82 s, accuracy 183 s. Three pipelines in three modes, with
# FFCV's and DALI's one-off costs, stay under 20 minutes.
FULL = {
    "throughput": ["--batch-size", "32"],
    # the harness's defaults (2600 CIFAR-sized images, four rates per activation): about 1.5 min; the
    # 20-epoch cap bounds the worst case (no rate reaching 25%) to about 6 min
    "relu-tanh": ["--epochs", "20"],
    "accuracy": ["--epochs", "2", "--steps-per-epoch", "12"],
}
# Issue 14: in single mode, each pipeline's library's stock loader (--baselines) and a workers sweep
# for the cores to feed (one more point per pipeline: about 1 min each, the stock loaders about 20 s).
SINGLE_EXTRA = {"full": ["--baselines", "--sweep-workers", "1,2", "--feed-target", "15000"], "smoke": ["--baselines"]}
SMOKE_DATA = ["--embedded-classes", "4", "--embedded-train-per-class", "12", "--embedded-val-per-class", "4"]
SMOKE = {
    "throughput": [*SMOKE_DATA, "--batch-size", "4", "--workers", "1", "--warmup-batches", "1", "--batches-per-repeat", "1",
                   "--loader-batches-per-repeat", "2", "--ceiling-images", "8"],
    "relu-tanh": [*SMOKE_DATA, "--batch-size", "8", "--relu-tanh-lrs", "0.001", "--epochs", "2"],
    "accuracy": [*SMOKE_DATA, "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "1"],
}


def suite_modes() -> list[str]:
    """The execution modes the suite measures throughput in: all three on any machine. With fewer than
    two GPUs model-parallel is emulated (its record says so), and data-parallel runs as many processes
    as there are GPUs, or two gloo processes on a CPU (``--nproc auto``)."""
    return list(MODES)


def launcher(mode: str) -> list[str]:
    """The command that starts ``bench.run`` for ``mode`` (for data-parallel, bench.run starts torchrun itself)."""
    return [sys.executable, "-m", "bench.run"]


def report_dir(results: Path, *, smoke: bool) -> Path:
    """Where the report goes: ``reports/`` (the committed reference report's folder), or beside the
    records for a smoke run, whose toy figures must never replace it."""
    return results / "report" if smoke else Path("reports").resolve()


def report_command(results: Path, out: Path) -> list[str] | None:
    """The report's command, or None while this checkout has no ``bench.report``."""
    if importlib.util.find_spec("bench.report") is None:
        return None
    return [sys.executable, "-m", "bench.report", "--results", str(results), "--out", str(out)]


def plan(results: Path, *, smoke: bool, cache_dir: str | None, progress: bool) -> list[tuple[str, list[str]]]:
    """(name, command) of every part, in order."""
    from pipelines import available_pipelines

    settings = SMOKE if smoke else FULL
    common = ["--out", str(results), *(["--cache-dir", cache_dir] if cache_dir else []), *([] if progress else ["--no-progress"])]
    parts = []
    for pipeline in available_pipelines():
        for mode in suite_modes():
            extra = SINGLE_EXTRA["smoke" if smoke else "full"] if mode == "single" else []
            parts.append((f"throughput {pipeline} {mode}", [*launcher(mode), "--harness", "throughput", "--pipeline", pipeline, "--mode", mode,
                                                            *settings["throughput"], *extra, *common]))
    parts.append(("relu-tanh", [*launcher("single"), "--harness", "relu-tanh", *settings["relu-tanh"], *common]))
    parts.append(("accuracy", [*launcher("single"), "--harness", "accuracy", *settings["accuracy"], *common]))
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.strip().splitlines()[0].replace("``", ""))
    parser.add_argument("--out", type=Path, help="results directory (default: results/suite-<UTC time>); records go to <out>/records")
    parser.add_argument("--cache-dir", help="where datasets and manifests are kept (default: env ALEXNET_BENCH_CACHE or ~/.cache/alexnet-bench)")
    parser.add_argument("--smoke", action="store_true", help="every part at toy sizes: checks the machinery, measures nothing "
                        "(one such run took about 3 minutes on a 2-core CPU shared with other work, three pipelines installed)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    args = parser.parse_args(argv)
    results = (args.out or Path("results") / time.strftime("suite-%Y%m%dT%H%M%S", time.gmtime())).resolve()
    results.mkdir(parents=True, exist_ok=True)
    parts = plan(results, smoke=args.smoke, cache_dir=args.cache_dir, progress=args.progress)
    print(f"{PROG}: {len(parts)} part(s){' (smoke sizes)' if args.smoke else ''}; results in {results}", flush=True)
    summary = []
    suite_start = time.perf_counter()
    for i, (name, command) in enumerate(parts, 1):
        print(f"\n[{i}/{len(parts)}] {name}  ({time.perf_counter() - suite_start:.0f} s elapsed)", flush=True)
        start = time.perf_counter()
        code = subprocess.run(command, env=os.environ.copy()).returncode
        summary.append({"part": name, "command": command, "exit_code": code, "seconds": time.perf_counter() - start})
        if code != 0:
            print(f"[{i}/{len(parts)}] {name} failed (exit {code}); going on", flush=True)
    # written before the report too, so that it can say the figures are a smoke run's
    atomic_write_json(results / "suite.json", {"parts": summary, "report": "building", "seconds": time.perf_counter() - suite_start, "smoke": args.smoke})
    out = report_dir(results, smoke=args.smoke)
    report = report_command(results, out)
    report_status = "not built: this checkout has no bench.report yet"
    if report is not None:
        print(f"\n[report] {' '.join(report)}", flush=True)
        code = subprocess.run(report).returncode
        report_status = f"built: {out / 'REPORT.md'} and {out / 'report.html'}" if code == 0 else f"failed (exit {code})"
    total = time.perf_counter() - suite_start
    atomic_write_json(results / "suite.json", {"parts": summary, "report": report_status, "seconds": total, "smoke": args.smoke})
    print(f"\n{PROG}: done in {total / 60:.1f} min", flush=True)
    for part in summary:
        print(f"  {'ok    ' if part['exit_code'] == 0 else 'FAILED'} {part['seconds']:7.1f} s  {part['part']}")
    records = sorted((results / RECORDS_DIR).glob("*.json"))
    print(f"records: {len(records)} in {results / RECORDS_DIR}")
    print(f"report: {report_status}")
    return 0 if all(p["exit_code"] == 0 for p in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
