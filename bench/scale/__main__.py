"""``python -m bench.scale``: what a dataset of ImageNet's size costs before the first batch.

Builds a synthetic ImageFolder at each of ``--sizes`` (1,000 classes, small JPEGs; see
``bench/scale/tree.py``), measures every start-up cost on it (``measure.py``), fits each
against N and projects it to ``--target`` images on each of ``--cores`` (``fit.py``), prints
the projection and writes a record (harness ``scale``) under ``--out``/records.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.errors import UserError
from bench.scale import fit, measure, record, tree


def positive_list(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes whole numbers separated by commas, not {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{flag} takes whole numbers of at least 1, not {text!r}")
    return values


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,30000,100000", help="training images of each simulated tree (at least three sizes for the fit)")
    p.add_argument("--pipelines", default="torchvision,dali,ffcv", help="pipelines whose time to first batch is measured (those not installed are skipped, and said)")
    p.add_argument("--cores", default="8,32,96", help="core counts the projection is printed for")
    p.add_argument("--target", type=int, default=fit.IMAGENET_TRAIN, help="images to project to (ILSVRC-2012's training set by default)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the manifest's check and each loader's workers")
    p.add_argument("--work", default=None, help="folder for the simulated trees and their cache (default: a temporary folder, removed at the end)")
    p.add_argument("--out", default="results", help="results folder; the record goes to OUT/records/")
    args = p.parse_args(argv)
    args.sizes = sorted(set(positive_list("--sizes", args.sizes)))
    if len(args.sizes) < 3:
        raise UserError(f"--sizes needs at least three different sizes to fit a curve, not {len(args.sizes)}")
    args.cores = positive_list("--cores", args.cores)
    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, not {args.workers}")
    return args


def run(args: argparse.Namespace) -> Path:
    started = time.time()
    load_before = record.load_average()
    pipelines, missing = measure.installed([p.strip() for p in args.pipelines.split(",") if p.strip()])
    for name in missing:
        print(f"note: pipeline {name} is not installed here: its time to first batch is not measured")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        jpegs = tree.distinct_jpegs()
        calibration = tree.decode_ratio(jpegs, work / "calibration")
        measured, tree_seconds = [], []
        for n in args.sizes:
            root = work / f"tree-{n}"
            shutil.rmtree(root, ignore_errors=True)
            tree_seconds.append(tree.build_tree(root, n, jpegs))
            costs = measure.measure_size(root, work / f"cache-{n}", pipelines, args.workers)
            measured.append(costs)
            print(f"N={n:,}: " + ", ".join(f"{k} {record.readable(k, v)}" for k, v in costs.items() if v is not None), flush=True)
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(work / f"cache-{n}", ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    fits = fit.fit_all(args.sizes, measured)
    for f in fits:
        if f["superlinear"]:
            print(f"warning: {f['cost']} grows faster than linearly (exponent {f['exponent']:.2f})")
    projection = fit.projections(fits, args.target, args.cores, args.workers, calibration["ratio"])
    record.print_projection(projection, args.target)
    config = {"sizes": args.sizes, "pipelines": pipelines, "pipelines_missing": missing, "cores": args.cores, "target": args.target,
              "workers": args.workers, "classes": tree.CLASSES, "val_every": tree.VAL_EVERY, "distinct_jpegs": tree.DISTINCT,
              "jpeg_side": tree.SIDE, "batch_size": measure.BATCH, "ffcv_write_mode": "jpg"}
    path = record.write_scale_record(Path(args.out), started=started, config=config, sizes=args.sizes, measured=measured, fits=fits,
                                     projection=projection, calibration=calibration, tree_seconds=tree_seconds,
                                     load={"before": load_before, "after": record.load_average()})
    print(f"record: {path} ({time.time() - started:.0f} s)")
    return path


def main(argv: list[str] | None = None) -> int:
    try:
        run(parse(argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
