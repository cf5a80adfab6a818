"""The ReLU-vs-tanh harness on tiny data: the record, the rule that picks each learning rate,
the definition of reaching the target, the budget-exhausted path, determinism, CIFAR-10's format."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from bench.config import RunConfig
from bench.data.cifar import cifar10_folder, load_cifar10
from bench.errors import UserError
from bench.harness import relu_tanh

TINY = dict(harness="relu-tanh", embedded_classes=4, embedded_train_per_class=16, embedded_val_per_class=2, batch_size=8, progress=False)


def run(tmp_path, **overrides) -> dict:
    config = RunConfig.with_preset({**TINY, "out": str(tmp_path), **overrides})
    return json.loads(relu_tanh.run(config).read_text())


def ran_on(record: dict) -> list[str]:
    """The devices a record says the run used (``Mode.describe()`` writes a list, ``devices``)."""
    return record["mode"]["devices"]


def first_crossing(batch_errors: list[float], window: int, target: float) -> int | None:
    """The definition, written out: the first iteration (from one full window on) whose trailing-window mean <= target."""
    for t in range(window, len(batch_errors) + 1):
        if np.mean(batch_errors[t - window : t]) <= target:
            return t
    return None


@pytest.mark.slow
def test_both_activations_reach_an_easy_target_and_the_record_says_how(tmp_path):
    record = run(tmp_path, relu_tanh_target_error=0.6, relu_tanh_lrs="0.001,0.003", epochs=15, relu_tanh_grid_extensions=0)
    assert record["status"] == "complete" and record["harness"] == "relu-tanh"
    model = record["model"]
    assert (model["name"], model["parameters"], model["input_size"], model["upsampled_from"]) == ("conv_local_13pct", 1_901_386 - 6 * 2049, 32, None)
    assert model["input_normalisation"].startswith("cuda-convnet") and "never published" in model["note"] and "13pct" in model["source"]
    protocol = record["protocol"]
    assert protocol["iterations_per_epoch"] == 64 // 8 and protocol["budget_iterations"] == 15 * 8
    assert protocol["weight_decay"] == 0.0 and protocol["dropout"] == 0.0 and protocol["augmentation"] == "none"
    assert protocol["lr_grid"] == [0.001, 0.003] and record["dataset"]["counts"]["train"] == 64
    window = protocol["iterations_per_epoch"]
    for activation in ("relu", "tanh"):
        r = record["results"][activation]
        curves = r["curves"]
        assert all(len(v) == r["iterations_run"] for v in curves.values())
        # reached exactly where the definition says, and the figures agree with each other
        assert r["iterations_to_target"] == first_crossing(curves["batch_error"], window, 0.6) is not None
        assert r["epochs_to_target"] == pytest.approx(r["iterations_to_target"] / window)
        assert r["seconds_to_target"] == curves["seconds"][r["iterations_to_target"] - 1] and r["reason"] is None
        assert curves["window_error"][r["iterations_to_target"] - 1] <= 0.6
        # the learning rate is the one the rule picks from the sweep table
        sweep = r["sweep"]
        assert [s["lr"] for s in sweep] == [0.001, 0.003]
        reached = [s for s in sweep if s["reached_at_iteration"] is not None]
        winner = min(reached, key=lambda s: (s["reached_at_iteration"], s["lr"]))
        assert r["lr"] == winner["lr"]
        # side by side, an epoch at a time: no rate ran an epoch past the winner's iteration count
        assert all(s["iterations"] < winner["reached_at_iteration"] + window for s in sweep)
        assert r["lr_at_grid_edge"] is True  # with two rates either one is an edge
        assert r["epoch_curves"]["epoch"] == list(range(1, r["iterations_run"] // window + 1))
        assert r["resources"]["cpu_seconds"] > 0 and 0 <= r["resources"]["machine_cpu_percent"] <= 100
    m = record["metrics"]
    assert m["iterations_to_target"] == {a: record["results"][a]["iterations_to_target"] for a in ("relu", "tanh")}
    assert m["ratio_tanh_to_relu"]["iterations"] == pytest.approx(m["iterations_to_target"]["tanh"] / m["iterations_to_target"]["relu"])
    assert m["ratio_tanh_to_relu"]["seconds"] == pytest.approx(m["seconds_to_target"]["tanh"] / m["seconds_to_target"]["relu"])
    assert m["ratio_reason"] is None and record["provenance"]["seed"] == 0


@pytest.mark.slow
def test_a_budget_too_small_says_so_and_the_seed_fixes_the_run(tmp_path):
    settings = dict(relu_tanh_lrs="0.001", epochs=1, model="convnet4")  # the cheapest net: three runs
    a = run(tmp_path / "a", **settings)
    assert a["status"] == "complete"
    for activation in ("relu", "tanh"):
        r = a["results"][activation]
        assert r["iterations_to_target"] is None and r["epochs_to_target"] is None and r["seconds_to_target"] is None
        assert r["reason"].startswith("did not reach 0.25 training error within its budget of 8 iterations")
        assert r["iterations_run"] == 8
    assert a["metrics"]["ratio_tanh_to_relu"] is None
    assert a["metrics"]["ratio_reason"] == "relu and tanh did not reach the target: no ratio"
    b = run(tmp_path / "b", **settings)
    c = run(tmp_path / "c", seed=1, **settings)
    for activation in ("relu", "tanh"):
        same = [x["results"][activation]["curves"] for x in (a, b)]
        assert same[0]["batch_loss"] == same[1]["batch_loss"] and same[0]["batch_error"] == same[1]["batch_error"]
        assert c["results"][activation]["curves"]["batch_loss"] != same[0]["batch_loss"]


@pytest.mark.slow
def test_alexnet_on_the_same_data_is_upsampled_and_unregularised(tmp_path):
    record = run(tmp_path, model="alexnet", batch_size=4, embedded_train_per_class=2, relu_tanh_lrs="0.001", epochs=1)
    assert record["status"] == "complete"
    assert record["model"]["input_size"] == 227 and record["model"]["upsampled_from"] == 32
    assert record["model"]["input_normalisation"].startswith("per-channel")
    assert record["results"]["relu"]["iterations_run"] == 2 and record["protocol"]["dropout"] == 0.0


def write_cifar10(root, per_batch: int = 6) -> None:
    """A small copy of CIFAR-10 in torchvision's on-disk format (pickled dicts, rows of R, G and B planes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, size=per_batch)
        planes = np.empty((per_batch, 3, 1024), dtype=np.uint8)
        planes[:, 0] = 10 + labels[:, None]  # the red plane carries the label
        planes[:, 1], planes[:, 2] = 20, 30
        with open(folder / name, "wb") as f:
            pickle.dump({"data": planes.reshape(per_batch, 3072), "labels": labels.tolist(), "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}, f)


def test_cifar10_is_read_from_torchvisions_format(tmp_path):
    write_cifar10(tmp_path)
    assert cifar10_folder(tmp_path) == cifar10_folder(tmp_path / "cifar-10-batches-py") == tmp_path / "cifar-10-batches-py"
    data = load_cifar10(tmp_path)
    assert data.train_images.shape == (30, 32, 32, 3) and data.test_images.shape == (6, 32, 32, 3)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int64
    assert np.array_equal(data.train_images[:, 5, 7, 0], 10 + data.train_labels)  # channels last, red first
    assert np.all(data.train_images[..., 1] == 20) and np.all(data.train_images[..., 2] == 30)
    assert data.classes == tuple(f"c{i}" for i in range(10))
    assert data.official is False and data.describe()["official_cifar10"] is False


@pytest.mark.slow
def test_the_harness_runs_on_a_cifar10_folder(tmp_path):
    write_cifar10(tmp_path / "data")
    record = run(tmp_path / "out", data=str(tmp_path / "data"), batch_size=10, relu_tanh_lrs="0.001", epochs=1)
    assert record["status"] == "complete" and record["config"]["preset"] == "paper"
    assert record["dataset"]["name"] == "cifar10" and record["dataset"]["counts"] == {"train": 30, "test": 6}
    assert record["protocol"]["iterations_per_epoch"] == 3
    assert ran_on(record) == ["cpu"]


def test_not_cifar10_is_a_clear_error(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(UserError, match=f"--data {tmp_path}: no CIFAR-10 in torchvision's format there"):
        load_cifar10(tmp_path)
    write_cifar10(tmp_path / "broken")
    (tmp_path / "broken" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="data_batch_3: not a CIFAR-10 batch file"):
        load_cifar10(tmp_path / "broken")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_data_and_networks_live_there(tmp_path):
    record = run(tmp_path, device="cuda", relu_tanh_lrs="0.001", epochs=2)
    assert record["status"] == "complete" and ran_on(record)[0].startswith("cuda")
    assert record["protocol"]["cudnn_deterministic"] is True
    assert all(record["results"][a]["iterations_run"] == 16 for a in ("relu", "tanh"))
