"""The project's pytest settings and pytest-benchmark's flags work together: a plain run skips the
benchmarks, ``--benchmark-only`` runs them (it overrides the ``--benchmark-skip`` in addopts),
and runs can be saved and compared."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def pytest_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_benchmarks.py", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_a_plain_run_spends_no_time_on_benchmarks(cli_env):
    out = pytest_run("-q", "-rs", env=cli_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" not in out.stdout.splitlines()[-1] and "skipped" in out.stdout.splitlines()[-1]
    assert "--benchmark-skip active" in out.stdout


@pytest.mark.slow
def test_benchmark_only_runs_saves_and_compares(cli_env, tmp_path):
    storage = f"file://{tmp_path / 'storage'}"
    first = pytest_run("--benchmark-only", "-k", "lrn and paper", "--benchmark-autosave", f"--benchmark-storage={storage}",
                       f"--benchmark-json={tmp_path / 'first.json'}", env=cli_env)
    assert first.returncode == 0, first.stdout + first.stderr
    saved = json.loads((tmp_path / "first.json").read_text())
    [bench] = saved["benchmarks"]
    assert bench["name"] == "test_lrn_forward_backward[paper]" and bench["group"] == "lrn"
    assert bench["stats"]["rounds"] >= 5 and bench["stats"]["median"] > 0
    assert list((tmp_path / "storage").rglob("*.json"))
    second = pytest_run("--benchmark-only", "-k", "lrn and paper", "--benchmark-compare", f"--benchmark-storage={storage}", env=cli_env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Comparing against benchmarks from" in second.stdout + second.stderr


@pytest.mark.slow
def test_every_installed_pipelines_loader_benchmark_runs(cli_env):
    """The loader group of each installed pipeline runs its body (once: --benchmark-disable), so a plain run's skip
    cannot hide a benchmark that would fail under --benchmark-only."""
    from pipelines import available_pipelines

    # addopts' --benchmark-skip removed; --benchmark-disable runs each benchmark's body once, untimed
    out = pytest_run("-o", "addopts=", "--benchmark-disable", "-k", "loader_batch", "-q", env=cli_env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(available_pipelines())} passed" in out.stdout.splitlines()[-1], out.stdout
