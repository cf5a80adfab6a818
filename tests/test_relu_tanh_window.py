"""relu-tanh's finer measure (a fixed window in iterations), the flag on a figure its window limits,
and the grid that grows when the chosen rate is at its edge."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.config import RunConfig
from bench.harness import relu_tanh

# convnet4: the cheapest net; what is tested here is the measurement, not the network
TINY = dict(harness="relu-tanh", model="convnet4", embedded_classes=4, embedded_train_per_class=16, embedded_val_per_class=2, batch_size=8, progress=False)


def run(tmp_path, **overrides) -> dict:
    return json.loads(relu_tanh.run(RunConfig.with_preset({**TINY, "out": str(tmp_path), **overrides})).read_text())


def first_full_window_crossing(errors: list[float], window: int, target: float) -> int | None:
    for t in range(window, len(errors) + 1):
        if np.mean(errors[t - window : t]) <= target:
            return t
    return None


def test_the_grid_grows_past_an_edge_winner_and_the_window_resolves_within_an_epoch(tmp_path):
    record = run(tmp_path, relu_tanh_target_error=0.6, relu_tanh_lrs="0.001,0.003", epochs=15, relu_tanh_window=4)
    assert record["protocol"]["window_iterations"] == 4 and record["protocol"]["lr_grid_extensions"] == 3
    for activation in ("relu", "tanh"):
        r = record["results"][activation]
        lrs = [s["lr"] for s in r["sweep"]]
        assert lrs[:2] == [0.001, 0.003] and lrs[2:] == r["lr_grid_added"] and r["lr_grid_added"]  # 0.001 or 0.003 won first: an edge
        tried = sorted(lrs)
        assert r["lr"] not in (tried[0], tried[-1]) or (len(r["lr_grid_added"]) == 3 and r["lr_edge_reason"])
        assert r["lr_at_grid_edge"] is (r["lr"] in (tried[0], tried[-1]))
        for before, new in zip([0.001, 0.003, *r["lr_grid_added"]], r["lr_grid_added"]):
            assert any(new == pytest.approx(lr * f) for lr in tried for f in (3, 1 / 3))
        # the finer measure, as defined, from the chosen run's own minibatch errors
        assert r["iterations_to_target_window"] == first_full_window_crossing(r["curves"]["batch_error"], 4, 0.6)
    m = record["metrics"]
    if m["ratio_tanh_to_relu_window"] is not None:
        fine = m["iterations_to_target_window"]
        assert m["ratio_tanh_to_relu_window"] == pytest.approx(fine["tanh"] / fine["relu"])


def test_a_target_reached_as_the_window_fills_is_flagged_and_gives_no_ratio(tmp_path):
    record = run(tmp_path, relu_tanh_target_error=0.99, relu_tanh_lrs="0.001", epochs=2, relu_tanh_window=3)
    for activation in ("relu", "tanh"):
        r = record["results"][activation]
        assert r["iterations_to_target"] == 8 and r["window_limited"] is True  # the first iteration the one-epoch window is full
        assert r["iterations_to_target_window"] == 3 and r["window_limited_window"] is True
        assert r["lr_grid_added"] == [] and r["lr_edge_reason"] is None  # one rate given: nothing to sweep
    m = record["metrics"]
    assert m["ratio_tanh_to_relu"] is None and "upper bound set by the window" in m["ratio_reason"]
    assert m["ratio_tanh_to_relu_window"] is None and "3-iteration window" in m["ratio_window_reason"]


def test_a_ratio_needs_both_figures_unlimited():
    results = {"relu": {"k": 10, "lim": False}, "tanh": {"k": 60, "lim": False}}
    assert relu_tanh.checked_ratio(results, "k", "lim", "w") == (6.0, None)
    results["relu"]["lim"] = True
    value, reason = relu_tanh.checked_ratio(results, "k", "lim", "w")
    assert value is None and reason.startswith("relu reached the target at the first iteration the w window was full")
    results["tanh"]["k"] = None
    assert relu_tanh.checked_ratio(results, "k", "lim", "w") == (None, "tanh did not reach the target: no ratio")
