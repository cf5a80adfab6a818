"""The report's relu-tanh and accuracy parts (issue 12): Figure 1 drawn as the paper does, the warning
beside the paper's 'about 6' for a run not on CIFAR-10, the finer measure, and the preset and what
it changed; from real records of tiny runs."""

from __future__ import annotations

import json

from bench.config import RunConfig
from bench.harness import relu_tanh
from bench.report import plots, sections, tables
from bench.report.loading import load_results, preset_columns


def test_figure1_the_warning_and_the_finer_measure_from_a_real_record(tmp_path):
    config = RunConfig.with_preset({"harness": "relu-tanh", "model": "convnet4", "embedded_classes": 4, "embedded_train_per_class": 16,
                                    "embedded_val_per_class": 2, "batch_size": 8, "progress": False, "out": str(tmp_path),
                                    "relu_tanh_target_error": 0.99, "relu_tanh_lrs": "0.001,0.003", "epochs": 2, "relu_tanh_grid_extensions": 0})
    record = json.loads(relu_tanh.run(config).read_text())
    results = load_results(tmp_path)
    [row] = [r for _, r in results.relu_tanh.iterrows()]
    warning = tables.relu_tanh_warning(results.relu_tanh)
    assert warning.startswith("**Not the paper's Figure 1.**") and record["run_id"] in warning
    for words in ("not the official CIFAR-10, generated images", "network convnet4 (Figure 1's was never published)",
                  "batch 8", "a budget of 2 epochs", "grid's edge for relu and tanh"):
        assert words in warning, words
    shown = tables.relu_tanh(results.relu_tanh, "here").shown.iloc[0]
    assert "window" in shown["tanh / ReLU, iterations (measured)"]  # reached as the one-epoch window filled: no ratio
    assert shown["iterations, finer window (ReLU / tanh)"] == "not reached / not reached"  # the default 50-iteration window outlasts these runs
    assert shown["preset; changed"].startswith("embedded-cpu; ") and "batch_size 8" in shown["preset; changed"] and "model convnet4" in shown["preset; changed"]
    fig = plots.relu_tanh_curves(row, results.relu_tanh_curves)
    by_epoch = fig.axes[0]
    assert by_epoch.get_xlabel() == "epochs" and by_epoch.get_ylabel() == "training error rate"
    styles = {line.get_label().split(" ")[0]: line.get_linestyle() for line in by_epoch.get_lines()}
    assert styles["ReLU"] == "-" and styles["tanh"] == "--" and styles["target"] == ":"
    assert min(by_epoch.get_lines()[0].get_xdata()) == 1.0  # the epoch average starts at the first full epoch
    doc_sections = sections.relu_tanh(results)
    assert any(isinstance(b, str) and b.startswith("**Not the paper's Figure 1.**") for b in doc_sections[0].blocks)


def test_accuracy_tables_name_the_preset_and_what_it_changed():
    embedded = RunConfig.with_preset({}).to_dict()
    assert preset_columns(embedded, ("init", "batch_size", "lr", "epochs")) == {"preset": "embedded-cpu", "changed": "init he, batch_size 32, lr 0.005, epochs 3"}
    paper = RunConfig.with_preset({"data": "/somewhere", "preset": "paper", "update_rule": "torch"}).to_dict()
    assert preset_columns(paper, ("init", "batch_size", "lr", "epochs", "update_rule")) == {"preset": "paper", "changed": "update_rule torch"}
    old = {k: v for k, v in paper.items() if k != "update_rule"}  # a record from before the field existed
    assert preset_columns(old, ("update_rule",))["changed"] == "none"
