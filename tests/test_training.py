"""Training end to end on generated data: the loss falls, the model beats chance, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch

from bench.config import RunConfig
from bench.data.synthetic import SyntheticSpec, ensure_synthetic
from bench.harness import accuracy


@pytest.fixture(scope="module")
def learnable_root(cache_dir):
    return ensure_synthetic(SyntheticSpec(classes=4, train_per_class=40, val_per_class=10, seed=1), cache_dir, progress=False)


def config(root, cache_dir, out, **overrides) -> RunConfig:
    base = dict(data=str(root), cache_dir=str(cache_dir), out=str(out), workers=0, progress=False, ten_crop=False)
    return RunConfig.with_preset({**base, **overrides})


@pytest.mark.slow
def test_short_training_lowers_the_loss_and_beats_chance(learnable_root, cache_dir, tmp_path):
    cfg = config(learnable_root, cache_dir, tmp_path, preset="embedded-cpu", epochs=6, ten_crop=True)
    record = json.loads(accuracy.run(cfg).read_text())
    curves, metrics = record["curves"], record["metrics"]
    assert record["status"] == "complete" and record["config"]["init"] == "he"
    assert curves["epoch"] == [1, 2, 3, 4, 5, 6]
    assert curves["train_loss"][-1] < 0.8 * curves["train_loss"][0]
    chance = 1 - 1 / 4
    assert metrics["top1_err_centre"] < chance - 0.25
    assert metrics["top1_err_10crop"] < chance - 0.25
    assert metrics["val_samples"] == 40


@pytest.mark.slow
def test_resume_gives_the_same_result_as_an_uninterrupted_run(small_root, cache_dir, tmp_path):
    common = dict(preset="embedded-cpu", steps_per_epoch=2, batch_size=8, seed=3)
    straight = json.loads(accuracy.run(config(small_root, cache_dir, tmp_path / "a", epochs=3, **common)).read_text())
    first = json.loads(accuracy.run(config(small_root, cache_dir, tmp_path / "b", epochs=1, **common)).read_text())
    resumed_cfg = config(small_root, cache_dir, tmp_path / "b", epochs=3, resume=first["checkpoint"], **common)
    resumed = json.loads(accuracy.run(resumed_cfg).read_text())
    assert resumed["run_id"] == first["run_id"]
    assert resumed["curves"] == straight["curves"] | {"images_per_s": resumed["curves"]["images_per_s"], "epoch_seconds": resumed["curves"]["epoch_seconds"]}
    assert resumed["metrics"] == straight["metrics"]
    a = torch.load(straight["checkpoint"], weights_only=True)["model"]
    b = torch.load(resumed["checkpoint"], weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
