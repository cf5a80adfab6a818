"""A small results directory of real records for the report and notebook tests: real harness
runs at tiny sizes (in this process, to spare a torch start-up per run), made once per session.

- a throughput sweep (torchvision, single mode, with the stock baseline and a feed target) over workers (0, 1) and batch sizes (2, 64):
  the batch-64 points fail for real (the 48-image split gives no full batch) and are recorded
  as failed with their error (AlexNet's training steps make each measured point cost 15-30 s
  on a 2-core CPU, so there are only three);
- throughput in model-parallel mode (emulated here: both towers on the CPU);
- relu-tanh with an easy target (both activations reach it: a measured ratio), and one with a
  budget too small to reach it (no ratio: the reason);
- accuracy on the embedded data: two epochs of one step, centre crop and ten views.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import RunConfig
from bench.harness import accuracy, relu_tanh, throughput
from bench.records import read_record

THROUGHPUT = dict(harness="throughput", batch_size=2, workers=1, warmup_batches=1, batches_per_repeat=1, loader_batches_per_repeat=2,
                  repeats=3, ceiling_images=8, progress=False, preset="embedded-cpu")
RELU_TANH = dict(harness="relu-tanh", model="convnet4", embedded_classes=4, embedded_train_per_class=16, embedded_val_per_class=2, batch_size=8, progress=False)
ACCURACY = dict(embedded_classes=4, embedded_train_per_class=12, embedded_val_per_class=4, batch_size=4, epochs=2, steps_per_epoch=1, progress=False)


def make_results(out: Path, data: Path, cache_dir: Path) -> Path:
    """Run every harness into ``out`` (its records under ``out/records``); returns ``out``."""
    common = {"cache_dir": str(cache_dir), "out": str(out)}
    throughput.run(RunConfig.with_preset({**THROUGHPUT, **common, "data": str(data), "sweep_workers": "0,1", "sweep_batch_sizes": "2,64",
                                                "baselines": True, "feed_target": 15000.0}))
    throughput.run(RunConfig.with_preset({**THROUGHPUT, **common, "data": str(data), "mode": "model-parallel"}))
    relu_tanh.run(RunConfig.with_preset({**RELU_TANH, **common, "relu_tanh_target_error": 0.6, "relu_tanh_lrs": "0.003", "epochs": 15}))
    relu_tanh.run(RunConfig.with_preset({**RELU_TANH, **common, "relu_tanh_lrs": "0.001", "epochs": 1}))
    accuracy.run(RunConfig.with_preset({**ACCURACY, **common}))
    return out


def records(results: Path) -> list[dict]:
    return [read_record(p) for p in sorted((results / "records").glob("*.json"))]
