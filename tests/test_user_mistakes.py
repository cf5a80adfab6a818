"""A user's mistake never costs a run or misstates one (issue 16): each mistake made, and its outcome checked."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from bench.checkpoint import save_checkpoint
from bench.config import RunConfig
from bench.run import config_from_args, main
from tests.conftest import REPO


def write(path: pathlib.Path, obj) -> pathlib.Path:
    path.write_text(json.dumps(obj))
    return path


def one_line_error(capsys, argv: list[str]) -> str:
    """Run bench.run in-process with ``argv``; it must exit 2 with one line and no traceback. Returns the line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_every_layer_of_the_settings_precedence(tmp_path):
    # defaults, then the preset: nothing given runs the embedded-cpu preset over the defaults
    config = config_from_args([])
    assert (config.preset, config.init, config.lr, config.batch_size, config.epochs, config.momentum) == ("embedded-cpu", "he", 0.005, 32, 3, 0.9)
    # a config file counts exactly like the flags it names, no more: the preset still fills the rest
    seed_only = write(tmp_path / "seed.json", {"seed": 1})
    config = config_from_args(["--config", str(seed_only)])
    assert (config.seed, config.preset, config.init, config.lr, config.batch_size, config.epochs) == (1, "embedded-cpu", "he", 0.005, 32, 3)
    # the file beats the preset, a flag beats the file
    batch = write(tmp_path / "batch.json", {"batch_size": 16, "seed": 1})
    assert config_from_args(["--config", str(batch)]).batch_size == 16
    assert config_from_args(["--config", str(batch), "--batch-size", "8"]).batch_size == 8
    # a checkpoint beats the preset (and the defaults); the file beats the checkpoint; a flag beats the file
    saved = RunConfig.with_preset({"epochs": 5, "out": str(tmp_path / "o"), "embedded_classes": 3, "lr": 0.002, "cache_dir": str(tmp_path)})
    ckpt = tmp_path / "run.pt"
    save_checkpoint(ckpt, {"run_id": "r", "epoch": 1, "config": saved.to_dict()})
    config = config_from_args(["--resume", str(ckpt), "--config", str(seed_only)])
    assert (config.epochs, config.out, config.embedded_classes, config.lr, config.cache_dir, config.seed) == (5, saved.out, 3, 0.002, str(tmp_path), 1)
    assert config.resume == str(ckpt)
    assert config_from_args(["--resume", str(ckpt), "--config", str(seed_only), "--seed", "2"]).seed == 2
    # a record likewise: the file beats the record, a flag beats the file
    record = write(tmp_path / "rec.json", {"schema_version": 1, "run_id": "r", "config": saved.to_dict()})
    config = config_from_args(["--rerun", str(record), "--config", str(batch)])
    assert (config.lr, config.epochs, config.batch_size, config.seed) == (0.002, 5, 16, 1)
    assert config_from_args(["--rerun", str(record), "--config", str(batch), "--batch-size", "4"]).batch_size == 4


def test_config_file_values_are_typed_like_flags(tmp_path, capsys):
    dashed = tmp_path / "run.yaml"
    dashed.write_text("batch-size: 16\nten-crop: false\nrelu_tanh_lrs: 0.01\nnproc: 3\n")
    config = config_from_args(["--config", str(dashed)])
    assert (config.batch_size, config.ten_crop, config.relu_tanh_lrs, config.nproc) == (16, False, "0.01", "3")
    for settings, message in [
        ({"epochs": "three"}, "epochs: invalid int value: 'three'"),
        ({"lr": "fast"}, "lr: invalid float value: 'fast'"),
        ({"init": "xavier"}, "init: invalid choice: 'xavier'"),
        ({"ten_crop": "yes"}, "ten_crop: expected true or false, not 'yes'"),
        ({"epochs": [1, 2]}, "epochs: expected one int value"),
        ({"batch-size": 8, "batch_size": 16}, "'batch_size' is given twice"),
    ]:
        path = write(tmp_path / "bad.json", settings)
        assert f"{path}: {message}" in one_line_error(capsys, ["--config", str(path), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_wrongly_typed_config_value_from_the_cli(cli_env, tmp_path):
    path = write(tmp_path / "run.json", {"epochs": "three"})
    out = subprocess.run([sys.executable, "-m", "bench.run", "--config", str(path), "--out", str(tmp_path / "out")],
                         cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr == f"python -m bench.run: error: {path}: epochs: invalid int value: 'three'\n"
    assert not (tmp_path / "out").exists()


def test_the_wrong_kind_of_file_is_named(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    save_checkpoint(ckpt, {"run_id": "r", "epoch": 1, "config": RunConfig().to_dict()})
    record = write(tmp_path / "rec.json", {"schema_version": 1, "run_id": "r", "status": "complete", "config": RunConfig().to_dict()})
    config = write(tmp_path / "run.json", {"seed": 3})
    text = tmp_path / "notes.txt"
    text.write_text("epoch 1: loss 2.3\nepoch 2: loss 2.1\n")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"run_id": "r", "path": pathlib.PurePosixPath("/x")}, unsafe)
    for argv, message in [
        (["--resume", str(record)], f"--resume: {record} is a run record: use --rerun {record}"),
        (["--resume", str(config)], f"--resume: {config} is a config file: use --config {config}"),
        (["--resume", str(text)], f"--resume: {text} is not a readable checkpoint"),
        (["--resume", str(unsafe)], f"--resume: {unsafe} is not a checkpoint this benchmark wrote"),
        (["--rerun", str(ckpt)], f"--rerun: {ckpt} is a checkpoint: use --resume {ckpt}"),
        (["--config", str(record)], f"--config: {record} is a run record: use --rerun {record}"),
        (["--config", str(ckpt)], f"--config: {ckpt} is a checkpoint: use --resume {ckpt}"),
        (["--rerun", str(record), "--resume", str(ckpt)], "give one of them"),
    ]:
        err = one_line_error(capsys, [*argv, "--out", str(tmp_path / "out")])
        assert message in err and "weights_only" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_finished_run_is_not_resumed(tmp_path, capsys):
    from bench.records import write_record

    out = tmp_path / "out"
    ckpt = tmp_path / "run.pt"
    save_checkpoint(ckpt, {"run_id": "r", "epoch": 3, "config": RunConfig.with_preset({"epochs": 3, "out": str(out)}).to_dict()})
    # killed after its last checkpoint, before its record: resuming evaluates it and writes the record
    assert config_from_args(["--resume", str(ckpt)]).epochs == 3
    record = write_record(out, {"run_id": "r", "status": "complete"})
    assert f"has trained all 3 of its epochs and {record} is complete: nothing left to train" in one_line_error(capsys, ["--resume", str(ckpt)])
    assert config_from_args(["--resume", str(ckpt), "--epochs", "4"]).epochs == 4  # training further is allowed
    assert [p.name for p in out.rglob("*")] == ["records", "r.json"] and json.loads(record.read_text())["status"] == "complete"


def test_unwritable_outputs_and_a_data_parallel_batch_that_does_not_split_are_found_before_any_work(cli_env, small_root, tmp_path, capsys):
    """One line, exit 2, before the data is opened or torchrun starts anything, nothing written (the real CLI where it launches)."""
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine\n")
    before = set(tmp_path.rglob("*"))
    for args, message in [
        (["--out", str(a_file)], f"--out {a_file}: exists and is not a directory"),
        (["--mode", "data-parallel", "--nproc", "3", "--batch-size", "32", "--device", "cpu", "--out", str(tmp_path / "out")],
         "--batch-size 32 does not split evenly over 3 processes (--nproc)"),
    ]:
        out = subprocess.run([sys.executable, "-m", "bench.run", "--data", str(small_root), *args],
                             cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.startswith(f"python -m bench.run: error: {message}") and out.stderr.count("\n") == 1, out.stderr
        assert out.stdout == ""
    for args, message in [
        (["--out", str(a_file / "sub")], f"--out {a_file / 'sub'}: is under {a_file}, which exists and is not a directory"),
        (["--cache-dir", str(a_file)], f"--cache-dir {a_file}: exists and is not a directory"),
    ]:
        assert message in one_line_error(capsys, ["--data", str(small_root), *args])
    assert set(tmp_path.rglob("*")) == before and a_file.read_text() == "mine\n"


def test_a_batch_larger_than_the_training_split_is_refused(small_root, cache_dir, tmp_path, capsys):
    # 48 training images, batch 64: no step could happen (the run used to "complete" with loss NaN)
    err = one_line_error(capsys, ["--data", str(small_root), "--cache-dir", str(cache_dir), "--out", str(tmp_path / "out"),
                                  "--batch-size", "64", "--workers", "0", "--no-progress"])
    assert "the training split has 48 image(s), fewer than one batch of 64: no training step could happen" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_val_folder_is_named(small_copy, cache_dir, tmp_path, capsys):
    import shutil

    shutil.rmtree(small_copy / "val")
    err = one_line_error(capsys, ["--data", str(small_copy), "--cache-dir", str(cache_dir), "--out", str(tmp_path / "out"), "--no-progress"])
    assert f"data root {small_copy} has no val/ folder" in err


def test_records_are_strict_json_and_files_follow_the_umask(tmp_path):
    import os

    from bench.records import write_record

    old = os.umask(0o022)
    try:
        path = write_record(tmp_path, {"run_id": "r", "curves": {"train_loss": [float("nan"), 1.5]}, "metrics": {"x": float("inf")}})
        ckpt = tmp_path / "checkpoints" / "r.pt"
        save_checkpoint(ckpt, {"epoch": 1})
    finally:
        os.umask(old)

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    record = json.loads(path.read_text(), parse_constant=refuse)
    assert record["curves"]["train_loss"] == [None, 1.5] and record["metrics"]["x"] is None
    assert record["non_finite"] == {"curves.train_loss[0]": "nan", "metrics.x": "inf"}
    assert path.stat().st_mode & 0o777 == 0o644 and ckpt.stat().st_mode & 0o777 == 0o644


@pytest.mark.slow
def test_an_interrupt_before_the_first_checkpoint_names_no_checkpoint(small_root, cli_env, tmp_path):
    import signal

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", "--data", str(small_root), "--out", str(out), "--batch-size", "8",
                             "--workers", "0", "--epochs", "5"], cwd=REPO, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    while not (seen and seen[-1].startswith("run ")):  # the line just before its loaders start
        seen.append(proc.stdout.readline())
        assert seen[-1], "the run ended before it started training"
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    stdout = "".join(seen) + stdout
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    assert "interrupted before the first checkpoint: nothing to resume" in stdout, stdout
    [record] = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert record["status"] == "interrupted" and record["checkpoint"] is None
    assert not (out / "checkpoints").exists()


def test_more_processes_than_cores_is_warned_about():
    from bench.harness.dispatch import oversubscription

    config = RunConfig.with_preset({"mode": "data-parallel", "nproc": "3", "device": "cpu", "batch_size": 30})
    assert oversubscription(config, cores=2).startswith("warning: --nproc 3 on 2 CPU core(s)")
    assert oversubscription(config, cores=3) is None
    assert oversubscription(RunConfig.with_preset({"nproc": "3", "device": "cpu"}), cores=2) is None  # single mode starts no processes
