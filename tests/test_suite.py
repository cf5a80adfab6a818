"""``python -m bench.suite`` (what ``nox -s bench`` runs): its plan, and a smoke run of every part."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import suite
from bench.records import read_record
from pipelines import available_pipelines
from tests.conftest import REPO


def test_the_plan_covers_every_installed_pipeline_in_every_mode(tmp_path):
    parts = suite.plan(tmp_path, smoke=False, cache_dir=None, progress=False)
    names = [name for name, _ in parts]
    expected = [f"throughput {p} {m}" for p in available_pipelines() for m in suite.suite_modes()]
    assert names == [*expected, "relu-tanh", "accuracy"]
    for _, command in parts:
        assert command[:3] == [sys.executable, "-m", "bench.run"]
        assert command[command.index("--out") + 1] == str(tmp_path) and "--no-progress" in command
    for name, command in parts:  # issue 14: single mode measures the stock loaders and sweeps workers for the cores to feed
        if name.startswith("throughput") and name.endswith(" single"):
            assert "--baselines" in command and command[command.index("--sweep-workers") + 1] == "1,2" and "--feed-target" in command


@pytest.mark.slow
def test_a_smoke_run_writes_every_record_in_one_place(cli_env, tmp_path):
    results = tmp_path / "results"
    out = subprocess.run([sys.executable, "-m", "bench.suite", "--smoke", "--no-progress", "--out", str(results),
                          "--cache-dir", str(tmp_path / "cache")], cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    parts = suite.plan(results, smoke=True, cache_dir=None, progress=False)
    records = [read_record(p) for p in sorted((results / "records").glob("*.json"))]
    assert len(records) == len(parts) and all(r["status"] == "complete" for r in records)
    assert sorted(r["harness"] for r in records) == sorted(["throughput"] * (len(parts) - 2) + ["relu-tanh", "accuracy"])
    summary = json.loads((results / "suite.json").read_text())
    assert [p["part"] for p in summary["parts"]] == [name for name, _ in parts] and summary["smoke"] is True
    assert all(p["exit_code"] == 0 for p in summary["parts"])
    assert f"records: {len(parts)} in {results / 'records'}" in out.stdout
    report = results / "report"  # a smoke run's report stays beside its records, never in reports/
    assert summary["report"] == f"built: {report / 'REPORT.md'} and {report / 'report.html'}"
    assert f"report: {summary['report']}" in out.stdout
    assert "**Smoke run**" in (report / "REPORT.md").read_text() and (report / "report.html").is_file()
