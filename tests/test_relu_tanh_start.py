"""relu-tanh: both activations start from the same weights in every model; the record marks the settings it did not use."""

from __future__ import annotations

import pytest
import torch

from bench.config import RunConfig
from bench.harness.relu_tanh import not_applied
from bench.harness.relu_tanh_trial import build_net, initial_weights


@pytest.mark.parametrize("model,init", [("convnet4", "paper"), ("conv_local_13pct", "paper"), ("alexnet", "he"), ("alexnet", "paper"), ("alexnet_torchvision", "paper")])
def test_both_activations_start_from_identical_weights(model, init):
    config = RunConfig(harness="relu-tanh", model=model, init=init, seed=3)
    start = initial_weights(config, 10)
    relu, tanh = build_net(config, "relu", 10), build_net(config, "tanh", 10)
    relu.load_state_dict(start)
    tanh.load_state_dict(start)  # what every Trial does
    assert all(torch.equal(a, b) for a, b in zip(relu.state_dict().values(), tanh.state_dict().values()))
    if (model, init) == ("alexnet", "he"):  # built for tanh on its own, He's gain would differ (5/3 against sqrt 2)
        alone = build_net(config, "tanh", 10).state_dict()["features.conv1.weight"]
        assert alone.std().item() == pytest.approx(start["features.conv1.weight"].std().item() * (5 / 3) / 2**0.5, rel=0.03)


def test_the_record_marks_what_a_default_run_did_not_use():
    skipped = not_applied(RunConfig.with_preset({"harness": "relu-tanh"}))
    assert {"init", "lr", "lrn", "crop", "decay_biases", "update_rule"} <= skipped.keys()
    alexnet = not_applied(RunConfig.with_preset({"harness": "relu-tanh", "model": "alexnet", "weight_decay": 1e-4}))
    assert "init" not in alexnet and "crop" not in alexnet and "decay_biases" not in alexnet and "lr" in alexnet
