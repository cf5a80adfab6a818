"""Shared fixtures: a small generated dataset and a private cache, made once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.data.manifest import load_manifest
from bench.data.synthetic import SyntheticSpec, ensure_synthetic

REPO = Path(__file__).resolve().parent.parent
SMALL = SyntheticSpec(classes=4, train_per_class=12, val_per_class=4, seed=0)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def small_root(cache_dir) -> Path:
    """A read-only-by-convention ImageFolder dataset of 4 classes (48 train, 16 val JPEGs)."""
    return ensure_synthetic(SMALL, cache_dir, progress=False)


@pytest.fixture(scope="session")
def manifest(small_root, tmp_path_factory):
    """The small dataset's manifest, scanned once per test session (treat it as read-only)."""
    return load_manifest(small_root, tmp_path_factory.mktemp("manifest"), progress=False)


@pytest.fixture
def small_copy(small_root, tmp_path) -> Path:
    """A private, writable copy of the small dataset (for tests that damage it)."""
    dst = tmp_path / "data"
    shutil.copytree(small_root, dst)
    return dst


@pytest.fixture(scope="session")
def cli_env(cache_dir) -> dict[str, str]:
    """Environment for running ``python -m bench.run`` in a subprocess from the repository root."""
    env = dict(os.environ)
    env["ALEXNET_BENCH_CACHE"] = str(cache_dir)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="session")
def report_results(tmp_path_factory, small_root, cache_dir) -> Path:
    """A results directory of real records of every harness at tiny sizes (tests/report_records.py), made once per session; read-only by convention."""
    from tests.report_records import make_results

    return make_results(tmp_path_factory.mktemp("report-results"), small_root, cache_dir)
