"""``python -m bench.report`` on real records (tests/report_records.py): what the tables, CSVs and
Markdown say is what the records say; a broken record is named and skipped; two machines are
never mixed; an emulated mode is labelled; the CLI's errors are one line; a crash while
rendering leaves the previous report whole."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.atomic import atomic_write_json
from bench.report import plots
from bench.report.build import write_report
from bench.report.loading import load_results
from tests.conftest import REPO
from tests.report_records import records

GPU_KEY = "1x NVIDIA H100 80GB HBM3"


def bench_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.report", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def copy_results(report_results: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "results"
    shutil.copytree(report_results, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv")


def table_line(markdown: str, run_id: str, header_word: str) -> str:
    """The row of ``run_id`` in the first Markdown table after a header containing ``header_word``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and header_word in line)
    return next(line for line in lines[start:] if run_id in line)


@pytest.fixture(scope="module")
def built(report_results, tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("report")
    done = bench_report("--results", str(report_results), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"report: {(out / 'REPORT.md').resolve()}" in done.stdout and f"report: {(out / 'report.html').resolve()}" in done.stdout
    return out, records(report_results)


def stats_median(metrics: dict, phase: str) -> float:
    return metrics[phase]["images_per_s"]["median"]


def test_cores_to_feed_headline_and_scaling_plot(built):
    """Issue 14: cores to feed from the records (rate per busy core), the headline from the records, the rate-vs-workers plot."""
    out, recs = built
    key = recs[0]["provenance"]["hardware"]["key"]
    slug_key = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
    feeding = csv(out, f"feeding-{slug_key}")
    sweep = [r for r in recs if r["harness"] == "throughput" and r["sweep"] and r["status"] == "complete"]
    top = max(sweep, key=lambda r: r["workers"])
    row = feeding.set_index("run_id").loc[top["run_id"]]  # single mode's row: its point with the most workers
    m = top["metrics"]
    per_core = stats_median(m, "loader_only") / m["loader_only"]["resources"]["cpu_cores_busy"]
    assert row["pipeline"] == "torchvision" and row["rate_per_core"] == pytest.approx(per_core)
    assert row["cores_to_feed_target"] == math.ceil(15000 / per_core)
    assert row["cores_to_feed_model"] == math.ceil(stats_median(m, "model_only") / per_core)
    markdown = (out / "REPORT.md").read_text()
    overview = markdown.split("## Throughput")[0]
    assert f"**{key}**" in overview and "Against the stock loader of its own library" in overview
    assert f"Cores of this CPU to feed 15000 img/s: " in overview and f"torchvision {int(row['cores_to_feed_target'])}" in overview
    headline = next(p for p in overview.split("\n\n") if p.startswith(f"**{key}**"))
    assert headline.count(". ") + 1 <= 5  # a few sentences, not a paragraph per mode
    assert (out / "figures" / f"workers-scaling-{slug_key}.png").is_file()


def test_feeding_arithmetic():
    from bench.harness.feeding import cores_to_feed, rate_per_core

    assert rate_per_core(300.0, 1.5) == 200.0 and rate_per_core(300.0, 0.0) is None and rate_per_core(None, 1.0) is None
    assert cores_to_feed(15000.0, 200.0) == 75 and cores_to_feed(15001.0, 200.0) == 76 and cores_to_feed(0.0, 200.0) is None


@pytest.mark.slow
def test_the_records_are_what_the_test_meant_them_to_be(built):
    _, recs = built
    throughput = [r for r in recs if r["harness"] == "throughput"]
    assert {r["status"] for r in throughput} == {"complete", "failed"}
    assert any(r["mode"]["emulated"] for r in throughput)
    relu_tanh = [r for r in recs if r["harness"] == "relu-tanh"]
    assert sorted(r["metrics"]["ratio_tanh_to_relu"] is None for r in relu_tanh) == [False, True]
    assert [r["dataset"]["embedded"] for r in recs if r["harness"] == "accuracy"] == [True]


@pytest.mark.slow
def test_throughput_csv_and_markdown_hold_the_records_figures(built):
    out, recs = built
    key = recs[0]["provenance"]["hardware"]["key"]
    table = csv(out, "throughput-" + re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")).set_index("run_id")
    markdown = (out / "REPORT.md").read_text()
    throughput = [r for r in recs if r["harness"] == "throughput"]
    assert set(table.index) == {r["run_id"] for r in throughput}
    for record in throughput:
        row = table.loc[record["run_id"]]
        line = table_line(markdown, record["run_id"], "stall fraction")
        assert row["status"] == record["status"] and row["hardware_key"] == key
        assert row["pipeline"] == record["pipeline"]["name"] and row["batch_size"] == record["batch_size"] and row["workers"] == record["workers"]
        assert row["pipeline_decoder"] == record["pipeline"]["decoder"]  # the CSV only: the page keeps the key columns
        if record["status"] != "complete":
            assert row["error"] == record["error"] and pd.isna(row["end_to_end_median"])
            failed = table_line(markdown, record["run_id"], "error")
            assert record["error"].replace("|", "\\|") in failed
            continue
        m = record["metrics"]
        for phase in ("loader_only", "end_to_end", "model_only"):
            stats = m[phase]["images_per_s"]
            assert row[f"{phase}_median"] == pytest.approx(stats["median"]) and row[f"{phase}_q1"] == pytest.approx(stats["q1"])
            assert f"{stats['median']:.1f} [{stats['q1']:.1f}-{stats['q3']:.1f}]" in line
        assert row["ceiling_cpu_median"] == pytest.approx(m["decode_ceiling"]["cpu"]["images_per_s"]["median"])
        assert f"| {m['loader_share_of_ceiling']['cpu']:.2f} " in line
        if "stock_baseline" in m:  # issue 14: the ratio to the library's stock loader beside the pipeline
            stock = m["stock_baseline"]
            assert row["stock_ratio"] == pytest.approx(stock["ratio"]) and f"| {stock['ratio']:.2f}x " in line
            assert row["stock_loader_only_median"] == pytest.approx(stock["loader_only"]["images_per_s"]["median"])
            assert stock["ratio"] == pytest.approx(stats_median(m, "loader_only") / stock["loader_only"]["images_per_s"]["median"])
        assert row["stall_fraction"] == pytest.approx(m["stall_fraction"]) and f"| {m['stall_fraction']:.3f} " in line
        assert row["loader_share_cpu"] == pytest.approx(m["loader_share_of_ceiling"]["cpu"])
        assert row["one_off_first_batch_s"] == pytest.approx(record["one_off_seconds"]["harness"]["first_batch_s"])
        for what, seconds in record["one_off_seconds"]["pipeline"].items():
            assert row[f"one_off_{record['pipeline']['name']}_{what.removesuffix('_s')}_s"] == pytest.approx(seconds)
        if record["mode"]["emulated"]:
            assert "emulated" in row["mode_label"] and "emulated" in line
    assert len(line.split("|")) <= 16  # the page keeps the key columns; the rest is in the CSV
    assert any("stock_baseline" in r["metrics"] for r in throughput if r["status"] == "complete")
    sweeps = {r["sweep"]["id"] for r in throughput if r["sweep"]}
    assert len(sweeps) == 1
    figures = {p.name for p in (out / "figures").glob("*.png")}
    sweep_slug = re.sub(r"[^a-z0-9]+", "-", sweeps.pop())
    assert any(name.startswith(f"sweep-{sweep_slug}-workers") for name in figures)
    # over batch size only one point was measured (the other failed): no line to draw
    assert not any(name.startswith(f"sweep-{sweep_slug}-batch_size") for name in figures)


@pytest.mark.slow
def test_relu_tanh_shows_the_ratio_beside_the_paper_or_the_reason(built):
    out, recs = built
    markdown = (out / "REPORT.md").read_text()
    for record in (r for r in recs if r["harness"] == "relu-tanh"):
        line = table_line(markdown, record["run_id"], "tanh / ReLU")
        ratio = record["metrics"]["ratio_tanh_to_relu"]
        if ratio is None:
            assert record["metrics"]["ratio_reason"] in line
            for activation in ("relu", "tanh"):
                reason = record["results"][activation]["reason"]
                assert reason is None or f"not reached: {reason}" in line
        else:
            assert f"| {ratio['iterations']:.2f} " in line and f"| {ratio['seconds']:.2f} " in line and "about 6" in line
            for activation in ("relu", "tanh"):
                assert f"| {record['results'][activation]['iterations_to_target']} " in line
        assert (out / "figures" / f"relu-tanh-{record['run_id'].lower()}.png").is_file()


@pytest.mark.slow
def test_accuracy_beside_the_published_figures_and_marked_not_imagenet(built):
    out, recs = built
    markdown = (out / "REPORT.md").read_text()
    [record] = [r for r in recs if r["harness"] == "accuracy"]
    line = table_line(markdown, record["run_id"], "10 views")
    m = record["metrics"]
    for key in ("top1_err_centre", "top5_err_centre", "top1_err_10crop", "top5_err_10crop"):
        assert f"| {100 * m[key]:.2f} " in line
    assert f"{len(record['curves']['epoch'])} of {record['epochs_planned']}" in line
    assert f"{record['dataset']['classes']} classes (not ImageNet" in line
    assert "**Not ImageNet.**" in markdown
    published = csv(out, "accuracy-published")
    assert published["top1_err"].tolist() == pytest.approx([0.375, 0.390, 0.407, 0.381, 0.429, 0.43478])
    assert published["top5_err"].tolist() == pytest.approx([0.170, 0.183, 0.182, 0.164, 0.198, 0.20934])
    for _, row in published.iterrows():
        assert re.search(rf"\| {100 * row['top1_err']:.2f} +\| {100 * row['top5_err']:.2f} +\|", markdown)
    schedule = [pd.read_csv(p) for p in (out / "tables").glob("accuracy-schedule-*.csv")]
    [schedule] = schedule
    assert schedule["lr"].tolist() == pytest.approx(record["curves"]["lr"])
    assert schedule["val_top1_err"].tolist() == pytest.approx(record["curves"]["val_top1_err"])


@pytest.mark.slow
def test_environment_has_one_row_per_run(built):
    out, recs = built
    env = csv(out, "environment").set_index("run_id")
    assert set(env.index) == {r["run_id"] for r in recs}
    for record in recs:
        row, prov = env.loc[record["run_id"]], record["provenance"]
        assert (row["commit"], row["torch"], row["seed"], row["hardware_key"]) == (prov["git"]["commit"], prov["packages"]["torch"], prov["seed"], prov["hardware"]["key"])


@pytest.mark.slow
def test_a_broken_record_is_named_and_skipped(report_results, tmp_path):
    results = copy_results(report_results, tmp_path)
    (results / "records" / "truncated.json").write_text('{"schema_version": 1, "run_id": "x", "harn')
    (results / "records" / "old-schema.json").write_text(json.dumps({"schema_version": 0, "run_id": "y"}))
    good = next(p for p in sorted((results / "records").glob("*accuracy*.json")))
    no_provenance = json.loads(good.read_text())
    del no_provenance["provenance"]
    no_provenance["run_id"] = "no-provenance"
    (results / "elsewhere").mkdir()
    atomic_write_json(results / "elsewhere" / "no-provenance.json", no_provenance)
    out = tmp_path / "report"
    done = bench_report("--results", str(results), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for name in ("records/truncated.json", "records/old-schema.json", "elsewhere/no-provenance.json"):
        assert f"skipped {name}: " in done.stderr
    skipped = csv(out, "skipped").set_index("file")
    assert "not a readable JSON record" in skipped.loc["records/truncated.json", "reason"]
    assert "not a schema-version-1 run record" in skipped.loc["records/old-schema.json", "reason"]
    assert "provenance" in skipped.loc["elsewhere/no-provenance.json", "reason"]
    markdown = (out / "REPORT.md").read_text()
    assert "## Records not read" in markdown and "3 file(s) could not be read" in markdown
    env = csv(out, "environment")
    assert set(env["run_id"]) == {r["run_id"] for r in records(report_results)}


def on_other_hardware(record: dict) -> dict:
    """The record as if measured on a GPU machine (a different hardware key, new run id)."""
    other = copy.deepcopy(record)
    other["run_id"] = record["run_id"] + "-gpu"
    other["provenance"]["hardware"].update(key=GPU_KEY, gpus=["NVIDIA H100 80GB HBM3"], gpu_count=1, cuda="13.0")
    return other


@pytest.mark.slow
def test_two_hardware_keys_are_never_mixed(report_results, tmp_path):
    results = copy_results(report_results, tmp_path)
    recs = records(report_results)
    for record in recs:
        if record["status"] == "complete":
            atomic_write_json(results / "records" / f"{record['run_id']}-gpu.json", on_other_hardware(record))
    out = tmp_path / "report"
    assert bench_report("--results", str(results), "--out", str(out)).returncode == 0
    cpu_key = recs[0]["provenance"]["hardware"]["key"]
    per_key = [p for p in (out / "tables").glob("*.csv") if p.stem not in ("environment", "accuracy-published", "skipped")]
    assert len(per_key) >= 8
    seen = set()
    for path in per_key:
        keys = set(pd.read_csv(path)["hardware_key"])
        assert len(keys) == 1, f"{path.name} mixes {keys}"
        seen |= keys
    assert seen == {cpu_key, GPU_KEY}
    markdown = (out / "REPORT.md").read_text()
    for harness_section in ("## Throughput", "## ReLU vs tanh", "## Accuracy"):
        body = markdown.split(harness_section, 1)[1].split("\n## ", 1)[0]
        assert f"### {cpu_key}" in body and f"### {GPU_KEY}" in body
        for part in body.split("\n### ")[1:]:  # every caption in a hardware part names that part's key, and only it
            key = part.splitlines()[0]
            captions = re.findall(r"Hardware: (.*?)\. Software", part)
            assert captions and set(captions) == {key}
    loaded = load_results(results)
    with pytest.raises(ValueError, match="one figure, one hardware key"):
        plots.throughput_bars(loaded.throughput)


@pytest.mark.slow
def test_emulated_is_in_every_label_of_the_model_parallel_point(built, report_results):
    out, recs = built
    loaded = load_results(report_results)
    emulated = loaded.throughput[loaded.throughput["emulated"]]
    assert len(emulated) == 1
    row = emulated.iloc[0]
    assert "emulated" in row["mode_label"] and "emulated" in plots.point_label(row)
    assert "emulated" in table_line((out / "REPORT.md").read_text(), row["run_id"], "stall fraction")
    html_text = (out / "report.html").read_text()
    cell = re.search(rf"<tr>(?:(?!</tr>).)*{row['run_id']}(?:(?!</tr>).)*</tr>", html_text, re.S).group(0)
    assert "emulated" in cell


@pytest.mark.slow
def test_html_is_self_contained(built):
    out, _ = built
    text = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]*)"', text)
    assert len(images) == len(list((out / "figures").glob("*.png"))) > 0
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "<script" not in text and "<link" not in text and "http://" not in text and "https://" not in text


@pytest.mark.slow
def test_a_crash_while_rendering_leaves_the_previous_report_whole(built, report_results, tmp_path, monkeypatch):
    out = tmp_path / "report"
    shutil.copytree(built[0], out)
    (out / "README.md").write_text("kept")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(document):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("bench.report.html.render", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_report(load_results(report_results), out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing half-written, no staging folder left behind


@pytest.mark.parametrize(
    "make,args,message",
    [
        (None, ["--results", "/nonexistent/results"], "--results /nonexistent/results: no such directory"),
        ("file", [], "not a directory"),
        ("empty", [], "no run records (*.json) under it"),
        ("broken", [], "none of its 1 .json file(s) is a readable run record"),
        ("out-file", [], "exists and is not a directory"),
        (None, ["--results"], "expected one argument"),
        (None, ["--colour", "red"], "unrecognized arguments: --colour red"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path, make, args, message):
    results, out = tmp_path / "results", tmp_path / "out"
    if make == "file":
        results.write_text("x")
    elif make in ("empty", "broken", "out-file"):
        (results / "records").mkdir(parents=True)
    if make == "broken":
        (results / "records" / "x.json").write_text("{")
    if make == "out-file":
        (results / "records" / "x.json").write_text("{}")
        out.write_text("x")
    done = bench_report(*(args or ["--results", str(results), "--out", str(out)]))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("python -m bench.report: ") and "Traceback" not in done.stderr
    assert not (out / "REPORT.md").exists()


def test_help_explains_every_flag():
    done = bench_report("--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for flag in ("--results", "--out"):
        assert flag in text
    assert "default: results" in text and "default: reports" in text and "reports/README.md" in text
