"""bench.scale: the fit logic, and the growth the manifest states, on small N (projections are benchmark output, not tests)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from bench.data.manifest import _list_files, load_manifest, progress_bar
from bench.scale import fit, tree
from tests.conftest import REPO


def test_growth_exponent_and_linear_fit_recover_known_curves():
    sizes = [1000, 3000, 10000]
    assert fit.growth_exponent(sizes, [2 + 0.001 * n for n in sizes]) == pytest.approx(0.60, abs=0.02)  # an intercept bends it below 1
    assert fit.growth_exponent(sizes, [1e-6 * n * n for n in sizes]) == pytest.approx(2.0)
    assert fit.linear_fit(sizes, [2 + 0.001 * n for n in sizes]) == pytest.approx((2.0, 0.001))
    assert fit.growth_exponent(sizes, [0.0, 1.0, 2.0]) is None


def test_fits_classify_growth_and_project_per_core_count():
    sizes = [1000, 3000, 10000]
    costs = [{"scan": 0.001 * n, "walk": 1e-5 * n, "compile": c, "quadratic": 1e-8 * n * n} for n, c in zip(sizes, (3.1, 2.9, 3.0))]
    fits = {f["cost"]: f for f in fit.fit_all(sizes, costs)}
    assert fits["walk"]["growth"] == "linear" and fits["compile"]["growth"] == "constant"
    assert fits["quadratic"]["growth"] == "superlinear" and fits["quadratic"]["superlinear"]
    assert fit.project(fits["compile"], 1_000_000, 8, 2) == pytest.approx(3.0)  # a constant is its mean, not an extrapolated noise line
    assert fit.project(fits["walk"], 1_000_000, 8, 2) == pytest.approx(10.0)  # serial: the same on any core count
    # parallel and decode-bound: divided over the cores, multiplied by the decode calibration
    assert fit.project(fits["scan"], 1_000_000, 8, 2, decode_ratio=4.0) == pytest.approx(1000 * 4 * 2 / 8)
    rows = fit.projections([fits["scan"]], 1_000_000, [8, 32], 2, 1.0)
    assert [(r["cores"], r["value"]) for r in rows] == [(8, pytest.approx(250)), (32, pytest.approx(62.5))]


def test_the_manifest_grows_linearly_on_disk(tmp_path):
    """Stated in bench/data/manifest.py: at most about 70 bytes an entry, linear in N."""
    jpegs = tree.distinct_jpegs(8, side=32)
    sizes, per_entry = [400, 1200], []
    for n in sizes:
        root = tmp_path / f"t{n}"
        tree.build_tree(root, n, jpegs, classes=50)
        m = load_manifest(root, tmp_path / "cache", workers=1, progress=False)
        size = (tmp_path / "cache" / "manifests" / f"{m.fingerprint}.json").stat().st_size
        per_entry.append(size / len(m.entries))
    assert all(30 < b < 70 for b in per_entry), per_entry
    assert per_entry[1] == pytest.approx(per_entry[0], rel=0.1)  # bytes per entry do not grow with N


def test_an_interrupted_check_resumes_without_decoding_again(tmp_path, monkeypatch):
    import bench.data.manifest as manifest_module

    root = tmp_path / "t"
    tree.build_tree(root, 200, tree.distinct_jpegs(4, side=32), classes=10)
    real, calls = manifest_module.check_image, []

    def interrupted_after_120(path, max_pixels):
        if len(calls) == 120:
            raise KeyboardInterrupt
        calls.append(path)
        return real(path, max_pixels)

    monkeypatch.setattr(manifest_module, "check_image", interrupted_after_120)
    with pytest.raises(KeyboardInterrupt):
        load_manifest(root, tmp_path / "cache", workers=1, progress=False)
    [journal] = (tmp_path / "cache" / "manifests").glob("*.partial")
    assert len(journal.read_text().splitlines()) == 120 and not list((tmp_path / "cache" / "manifests").glob("*.json"))
    with open(journal, "a") as f:
        f.write('["train/n00000000/cut sh')  # a line a kill cut short is ignored
    calls.clear()
    monkeypatch.setattr(manifest_module, "check_image", lambda path, max_pixels: calls.append(path) or real(path, max_pixels))
    m = load_manifest(root, tmp_path / "cache", workers=1, progress=False)
    assert len(calls) == 208 - 120 and len(m.split("train")) == 200 and len(m.split("val")) == 8
    assert not journal.exists()


def test_the_check_shows_images_per_second_and_the_time_left():
    out = io.StringIO()
    with progress_bar(1000, 0, True, file=out) as bar:
        bar.update(10)
        bar.refresh()
    text = out.getvalue()
    assert "checking images" in text and "10/1000" in text and "img/s" in text and "<" in text  # elapsed<remaining


def test_the_fingerprint_walk_lists_every_file_once(tmp_path):
    root = tmp_path / "t"
    tree.build_tree(root, 300, tree.distinct_jpegs(4, side=32), classes=7)
    classes, listed = _list_files(root)
    assert len(classes) == 7 and len(listed) == 300 + tree.val_count(300) == len({f.path for f in listed})


def test_cli_refuses_too_few_sizes(cli_env, tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.scale", "--sizes", "10,20", "--out", str(tmp_path)], cwd=REPO, env=cli_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--sizes needs at least three" in out.stderr, out.stderr
    assert not (tmp_path / "records").exists()


@pytest.mark.slow
def test_cli_writes_a_record_with_fits_and_projection(cli_env, tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench.scale", "--sizes", "200,400,600", "--pipelines", "torchvision", "--workers", "1",
                          "--cores", "8,32", "--out", str(tmp_path)], cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "projected start-up costs at 1,281,167 images" in out.stdout
    [path] = (tmp_path / "records").glob("*.json")
    record = json.loads(path.read_text())
    assert record["harness"] == "scale" and record["sizes"] == [200, 400, 600] and len(record["measured"]) == 3
    costs = {f["cost"] for f in record["fits"]}
    assert {"walk", "scan", "reload", "manifest_bytes", "torchvision.first_batch"} <= costs
    assert {(p["cost"], p["cores"]) for p in record["projection"]} == {(c, k) for c in costs for k in (8, 32)}
    # the report's section reads it
    from bench.report.loading import load_results
    from bench.report.sections import build_document

    results = load_results(tmp_path)
    assert results.skipped.empty and len(results.scale) == 1
    [section] = [s for s in build_document(results).sections if s.title == "At ImageNet scale"]
    [part] = [s for s in build_document(results).sections if s.level == 3 and s.title == results.scale["hardware_key"][0]]
    table = part.blocks[0]
    assert list(table.shown.columns) == ["cost", "growth (exponent)", "8 cores", "32 cores"] and "walk" in set(table.shown["cost"])


@pytest.mark.parametrize("name", ["torchvision", "dali", "ffcv"])
def test_each_installed_pipeline_is_measured_to_its_first_batch(name, small_root, tmp_path):
    """``bench.scale`` drives the pipelines' own API: a change there must not leave the scale harness calling what is gone."""
    from bench.scale.measure import installed, measure_pipeline

    if not installed([name])[0]:
        pytest.skip(f"{name} is not installed")
    costs = measure_pipeline(name, small_root, tmp_path, workers=1)
    assert costs["first_batch"] > 0
