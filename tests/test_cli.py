"""``python -m bench.run``: help, user errors (one line, exit 2, no traceback), a real run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.run import HELP, build_parser
from tests.conftest import REPO


def bench_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_help_explains_every_flag(cli_env):
    out = bench_run("--help", env=cli_env)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for name in HELP:
        assert "--" + name.replace("_", "-") in text
    assert "--no-progress" in text and "--config" in text


def test_every_flag_has_help():
    for action in build_parser()._actions:
        assert action.help, action.option_strings


@pytest.mark.parametrize(
    "args,message",
    [
        (["--pipeline", "nope"], "unknown pipeline 'nope'"),
        (["--mode", "sideways"], "invalid choice: 'sideways'"),
        (["--epochs", "-1"], "--epochs must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--epochs", "two"], "invalid int value: 'two'"),
        (["--data", "/nonexistent/imagenet"], "data root /nonexistent/imagenet does not exist"),
        (["--resume", "/nonexistent/ckpt.pt"], "no checkpoint at /nonexistent/ckpt.pt"),
        (["--config", "/nonexistent/run.yaml"], "cannot read config /nonexistent/run.yaml"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(cli_env, tmp_path, args, message):
    out = bench_run("--out", str(tmp_path), *args, env=cli_env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert message in out.stderr
    assert not (tmp_path / "records").exists()


def test_cuda_requested_without_a_gpu(cli_env, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = bench_run("--device", "cuda", "--out", str(tmp_path), env=cli_env)
    assert out.returncode == 2 and out.stderr.strip().endswith("no CUDA GPU is visible on this machine")


def test_config_file_with_an_unknown_key(cli_env, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epochs: 2\nlearning_rate: 0.1\n")
    out = bench_run("--config", str(cfg), env=cli_env)
    assert out.returncode == 2 and f"{cfg}: unknown key(s) learning_rate" in out.stderr


def test_a_corrupt_checkpoint_is_refused(cli_env, tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    out = bench_run("--resume", str(bad), env=cli_env)
    assert out.returncode == 2 and f"{bad} is not a readable checkpoint" in out.stderr


@pytest.mark.slow
def test_a_real_run_writes_a_complete_record(cli_env, small_root, tmp_path):
    out = bench_run(
        "--data", str(small_root), "--out", str(tmp_path), "--epochs", "1", "--steps-per-epoch", "1",
        "--batch-size", "8", "--workers", "1", "--no-progress", env=cli_env,
    )
    assert out.returncode == 0, out.stderr
    [path] = (tmp_path / "records").glob("*.json")
    assert f"record: {path}" in out.stdout  # --no-progress still says where the record is
    record = json.loads(path.read_text())
    assert record["schema_version"] == 1 and record["status"] == "complete"
    assert record["config"]["preset"] == "paper" and record["config"]["init"] == "paper"
    assert record["dataset"]["fingerprint"] and record["dataset"]["counts"]["train"]["ok"] == 48
    prov = record["provenance"]
    assert prov["git"]["commit"] and prov["packages"]["torch"].startswith("2.14.1")
    assert prov["hardware"]["cpu_count"] >= 1 and "key" in prov["hardware"] and prov["seed"] == 0
    assert set(record["curves"]) >= {"train_loss", "val_top1_err", "val_top5_err", "images_per_s", "lr"}
    assert set(record["metrics"]) == {"top1_err_centre", "top5_err_centre", "top1_err_10crop", "top5_err_10crop", "val_samples"}
    assert (tmp_path / "checkpoints" / f"{record['run_id']}.pt").is_file()
    assert not list(tmp_path.rglob("*.partial"))


def help_lines(capsys, monkeypatch, main, argv=("--help",)) -> list[str]:
    """``--help`` of an in-process ``main``, one line per flag (a wide terminal: argparse wraps at $COLUMNS)."""
    monkeypatch.setenv("COLUMNS", "3000")
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 0
    lines: list[str] = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("      ") and lines and lines[-1].startswith("  -"):  # a long flag's help, on the line below it
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def test_help_states_the_defaults_a_run_gets(capsys, monkeypatch):
    """Every RunConfig field's flag states the default it gets: first the default run's (the embedded data, its preset),
    then the value elsewhere and a harness's own where those differ; never a placeholder or an empty default."""
    import re
    from dataclasses import fields

    from bench.config import RunConfig
    from bench.run import PRECEDENCE, main

    lines = help_lines(capsys, monkeypatch, main)
    assert " ".join(PRECEDENCE.split()) in " ".join(" ".join(lines).split())
    flags = {line.split()[0].rstrip(","): line for line in lines if line.startswith("  --")}
    default_run, elsewhere = RunConfig.with_preset({}), RunConfig.with_preset({"data": "/data/imagenet"})
    relu_tanh = RunConfig.with_preset({"harness": "relu-tanh", "data": "/data/cifar10"})
    for f in fields(RunConfig):
        line = flags["--" + f.name.replace("_", "-")]
        assert "MISSING" not in line and " object at 0x" not in line and "(default: )" not in line, line
        set_here = {"data", "harness"}  # what the comparison runs set themselves
        values = [getattr(c, f.name) for c in ((default_run,) if f.name in set_here else (default_run, elsewhere, relu_tanh))]
        if f.name == "preset":  # a run records the preset auto resolved to
            assert "auto (embedded-cpu on the embedded data, paper elsewhere)" in line and line.endswith("(default: auto)"), line
            continue
        if not any(str(value) for value in values):
            assert "default:" not in line, line
            continue
        assert line.count("(default: ") == 1, line
        stated = re.search(r"\(default: (.*)\)$", line).group(1)
        assert stated.startswith(str(values[0])), (f.name, stated, values[0])
        for value in values[1:]:
            assert str(value) in stated, (f.name, stated, value)


def test_flags_are_never_matched_by_a_prefix_and_other_helps_are_whole(capsys, monkeypatch):
    from bench.report.__main__ import main as report_main
    from bench.suite import main as suite_main

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--epoch", "2"])
    assert exit_.value.code == 2 and "unrecognized arguments: --epoch 2" in capsys.readouterr().err
    report = " ".join(help_lines(capsys, monkeypatch, report_main))
    assert "write the report: REPORT.md, a self-contained report.html, the plots as PNG and the tables as CSV." in report
    suite = " ".join(help_lines(capsys, monkeypatch, suite_main))
    assert "about a minute" not in suite and "took about 3 minutes on a 2-core CPU" in suite
