"""The notebooks: committed without outputs, and each one runs headless (nbclient, a kernel of
this interpreter) against real records (tests/report_records.py) without a cell error."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOKS = REPO / "notebooks"
NAMES = ("throughput.ipynb", "relu_tanh.ipynb", "accuracy.ipynb")


def test_every_notebook_is_there_and_committed_without_outputs():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name}: a cell has outputs; clear them before committing"


def test_notebooks_read_records_through_the_reports_loading_code():
    for name in NAMES:
        source = "".join(c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells if c.cell_type == "code")
        assert "from bench.report.loading import load_results" in source and "json.load" not in source and "read_record" not in source
        assert 'os.environ.get("ALEXNET_BENCH_RESULTS") or ("../results" if Path("../results").is_dir() else "../reports/records")' in source


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless_against_real_records(name, report_results, monkeypatch):
    monkeypatch.setenv("ALEXNET_BENCH_RESULTS", str(report_results))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # kernel "python3": jupyter_client starts it with this interpreter (sys.executable), in notebooks/, where the first cell makes
    # this checkout importable as a clean clone would be; a cell error raises CellExecutionError
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    records = len(list((report_results / "records").glob("*.json")))
    assert f"{records} record(s) read from {report_results.resolve()}; 0 file(s) skipped" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no plot"


def test_a_fresh_clone_runs_the_notebooks_on_the_committed_reference_records(tmp_path, monkeypatch):
    """No ALEXNET_BENCH_RESULTS and no results/ (a fresh clone): the notebook reads reports/records, every file a record."""
    clone = tmp_path / "clone"
    shutil.copytree(NOTEBOOKS, clone / "notebooks")
    shutil.copytree(REPO / "reports" / "records", clone / "reports" / "records")
    monkeypatch.delenv("ALEXNET_BENCH_RESULTS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the code, as `pip install -e .` would give it
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(clone / "notebooks" / "throughput.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(clone / "notebooks")}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    records = [p for p in (clone / "reports" / "records").glob("*.json") if p.name != "suite.json"]
    assert records and f"{len(records)} record(s) read from {(clone / 'reports' / 'records').resolve()}; 0 file(s) skipped" in text
