"""The ReLU-vs-tanh harness: the paper's Figure 1.

"A four-layer convolutional neural network with ReLUs reaches a 25% training error rate on
CIFAR-10 six times faster than an equivalent network with tanh neurons. The learning rates
for each network were chosen independently to make training as fast as possible. No
regularization of any kind was employed."

What this harness does, and where the paper leaves room, what it chooses:

- The network: ``--model conv_local_13pct`` (the default here: cuda-convnet's
  conv-conv-local-local CIFAR-10 net, which section 3.3 calls "a four-layer CNN";
  ``model/conv_local.py``; Figure 1's own net was never published; ``conv_local_11pct`` adds
  the normalisation, ``convnet4`` is cuda-convnet's three-hidden-layer layers-18pct net), once
  with ReLU and once with tanh, nothing else different:
  same layers, same initial weights (the network as initialised for ReLU, loaded into both),
  same sample order. ``--model alexnet``
  (or ``alexnet_torchvision``) runs the full network on the same 32x32 data, upsampled
  bilinearly to ``--crop``.
- The data: CIFAR-10 from ``--data`` (torchvision's format, never downloaded) or the embedded
  CIFAR-sized default (``bench.data.cifar``), or any ImageFolder root at 32 px. The cuda-convnet nets get what it fed them (0-255
  pixels minus the training set's mean image); the AlexNets get this project's per-channel
  normalisation. No augmentation.
- No regularisation: weight decay 0 unless ``--weight-decay`` is given, no dropout (the
  AlexNets are built with dropout 0), no augmentation. SGD with ``--momentum``, batch
  ``--batch-size``, the learning rate constant.
- Training error: the error of each minibatch as the forward pass that trains on it sees it,
  averaged over the last epoch's worth of iterations (the running average cuda-convnet
  printed; the figure's curve at epoch ends). An activation reaches the target at the first
  iteration, from the end of the first epoch on, where that average is at or below
  ``--relu-tanh-target-error`` (0.25). (Within the first epoch the curve holds the mean so
  far, which never counts: a lucky first minibatch is not a training error.) That figure
  cannot be smaller than one epoch: a target reached at the first iteration the window is
  full is flagged (``window_limited``) and gives no ratio. Beside it, a finer measure: the
  mean over the last ``--relu-tanh-window`` iterations (default 50), counted once that many
  have run, with the same flag at its own first full window; it resolves fast learners.
- The learning rate of each activation, chosen independently by a sweep over
  ``--relu-tanh-lrs``, every rate from the same start: the rate that reaches the target in
  the fewest iterations wins (ties: the lower rate); if none does, the one with the lowest
  training error at the end. By default (``--relu-tanh-sweep-iterations 0``) the rates train
  side by side, an epoch at a time, until one reaches the target (the others stop at that
  iteration: they can no longer be faster) or the budget (``--epochs``, default 40) runs
  out: the rule exactly, at about (number of rates) x (the winner's iterations). With
  ``--relu-tanh-sweep-iterations N`` every rate trains N iterations and only the winner goes
  on (exactly as if it had never stopped) to the target or the budget: cheaper, but it
  judges the rates by their start. A winner at the edge of the grid makes the grid grow in
  that direction (x3 or /3, one rate at a time, every new rate from the same start, at most
  ``--relu-tanh-grid-extensions`` times, default 3), so the chosen rate is inside the rates
  tried; one still at the edge after that is flagged with the reason.
- Recorded for each activation: iterations, epochs and training seconds (its own steps only,
  sweep trials of other rates excluded) to the target, or null with the reason; the whole
  learning curve; the sweep. And the ratios tanh / ReLU (the paper: about 6 in iterations).
- Determinism: the seed fixes the initial weights and the sample order of every epoch
  (``pipelines.seeding``); on a CPU two runs with the same seed give the same curves. On
  CUDA cuDNN is held to its deterministic algorithms, but some kernels (the backward pass of
  overlapping max pooling accumulates with atomics) can still differ in the last bits between
  runs, so curves may drift apart slightly; the order and the initial weights do not. Denormal
  floats are flushed to zero during the run: on an x86 CPU the tiny initial weights otherwise
  make ReLU steps several times slower than tanh steps (measured here: 45 vs 134 images/s),
  which would bias the wall-time comparison with a cost GPUs do not have.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from bench.builders import build_model
from bench.config import RunConfig
from bench.console import notice, say
from bench.data.cifar import open_image_arrays
from bench.errors import UserError
from bench.harness.relu_tanh_trial import GRID_STEP, NATIVE_SIZE_MODELS, TrainingData, initial_weights, prepare, sweep_and_train
from bench.harness.resources import ResourceMonitor
from bench.modes import Mode, running_mode
from bench.provenance import provenance
from bench.records import ended_by, new_run_id, write_record

RELU_TANH_EPOCHS = 40  # the default budget: Figure 1's axis runs to 35 epochs
ACTIVATIONS = ("relu", "tanh")
SELECTION_RULE = (
    "every learning rate trains from the same start (until the target, the budget, or the best rate's iteration count; "
    "or for sweep_iterations when that is not 0, after which the winner goes on); fewest iterations to the target wins, "
    "else the lowest training error at the end; ties go to the lower rate"
)
FIGURE1_NETWORK_NOTE = ("Figure 1's own network was never published; the paper calls it a four-layer CNN, "
                        "the phrase section 3.3 uses for cuda-convnet's conv-conv-local-local CIFAR-10 net")
NETWORK_SOURCES = {
    "conv_local_13pct": "cuda-convnet example-layers/layers-conv-local-13pct.cfg (the paper's four-layer CNN, 13% without normalisation)",
    "conv_local_11pct": "cuda-convnet example-layers/layers-conv-local-11pct.cfg (the paper's four-layer CNN, 11% with normalisation)",
    "convnet4": "cuda-convnet example-layers/layers-18pct.cfg (three hidden layers by the paper's count)",
    "alexnet": "the paper's AlexNet (section 3), on 32x32 images upsampled",
    "alexnet_torchvision": "torchvision's AlexNet variant, on 32x32 images upsampled",
}
TRAINING_ERROR_WINDOW = (
    "the finer measure: mean of the minibatch errors over the last relu_tanh_window iterations, counted once that many "
    "have run; it resolves a target reached within the first epoch"
)
TRAINING_ERROR = (
    "mean of the minibatch errors over the last epoch's worth of iterations, each minibatch measured by the forward pass "
    "that trains on it; counted from the end of the first epoch (before it, the curve holds the mean so far)"
)


def train_activation(config: RunConfig, activation: str, data: TrainingData, mode: Mode, *, budget: int, sweep_iterations: int,
                     initial: dict[str, torch.Tensor]) -> dict:
    """One activation's result: the chosen rate, the figures to the target (or why there are none), the curves."""
    target = config.relu_tanh_target_error
    grid = config.relu_tanh_lr_grid()
    with ResourceMonitor(mode.input_device) as monitor:  # CPU, memory, and how busy the machine was (the seconds depend on it)
        best, sweep, added = sweep_and_train(config, activation, data, mode, budget=budget, sweep_iterations=sweep_iterations, initial=initial)
    epochs_budget = budget / best.iterations_per_epoch
    tried = sorted(grid + added)
    at_edge = len(tried) > 1 and best.lr in (tried[0], tried[-1])
    window = config.relu_tanh_window
    result = {
        "activation": activation,
        "lr": best.lr,
        "lr_at_grid_edge": at_edge,
        "lr_grid_added": added,
        "lr_edge_reason": (f"still at the edge after the grid was extended {len(added)} times (--relu-tanh-grid-extensions "
                           f"{config.relu_tanh_grid_extensions}): the best rate may lie beyond {best.lr:g}") if at_edge else None,
        "sweep": sweep,
        "iterations_run": best.iteration,
        "iterations_to_target": best.reached,
        "epochs_to_target": best.reached / best.iterations_per_epoch if best.reached else None,
        "seconds_to_target": best.reached_seconds,
        "window_limited": best.reached is not None and best.reached == best.iterations_per_epoch,
        "iterations_to_target_window": best.reached_fine,
        "window_limited_window": best.reached_fine is not None and best.reached_fine == window,
        "window_reason": None if best.reached_fine is not None else (
            f"the mean over the last {window} iterations was not at or below {target:g} when the run stopped"),
        "reason": None,
        "final_training_error": None if math.isnan(best.window_error) else best.window_error,
        "curves": best.curves,
        "epoch_curves": best.epoch_curves(),
        "resources": monitor.result(),
    }
    if best.reached is None:
        if best.diverged:
            result["reason"] = f"every learning rate in {grid} diverged (loss not finite)"
        else:
            result["reason"] = (f"did not reach {target:g} training error within its budget of {budget} iterations "
                                f"({epochs_budget:g} epochs); training error at the end {best.window_error:.4f}")
    say(config, f"{activation}: lr {best.lr:g}, " + (f"reached {target:g} after {best.reached} iterations "
                f"({result['epochs_to_target']:.2f} epochs, {best.reached_seconds:.1f} s)" if best.reached else result["reason"]))
    return result


def not_applied(config: RunConfig) -> dict[str, str]:
    """The settings in ``config`` this harness did not use, each with the reason (the record keeps every setting)."""
    skipped = {
        "lr": "relu-tanh chooses each activation's rate from --relu-tanh-lrs",
        "activation": "relu-tanh runs both",
        "lr_patience": "the learning rate is constant",
        "max_lr_drops": "the learning rate is constant",
        "update_rule": "the learning rate is constant, and the paper's and torch's rules then take the same steps",
        "steps_per_epoch": "an epoch is the whole training split; the budget is --epochs",
        "ten_crop": "no evaluation: Figure 1 is a training error",
        "pipeline": "the training split is held in memory as tensors; no input pipeline runs",
        "flip_prob": "no augmentation (the paper: no regularization of any kind)",
        "lighting_sigma": "no augmentation (the paper: no regularization of any kind)",
        "lighting_stats": "no augmentation; normalisation is computed from the training split",
    }
    if config.weight_decay == 0:
        skipped["decay_biases"] = "weight decay is 0"
    if config.model != "alexnet":  # the only network built with --init and --lrn (bench.builders.build_model)
        skipped["init"] = f"{config.model} has its own initialisation, not --init"
        skipped["lrn"] = f"{config.model} has no AlexNet LRN"
    if config.model in NATIVE_SIZE_MODELS:
        skipped["crop"] = f"{config.model} takes the 32x32 images as they are"
    return skipped


def checked_ratio(results: dict, key: str, limited: str, window: str) -> tuple[float | None, str | None]:
    """tanh / ReLU of ``results[a][key]``; None and the reason when either is missing or limited by its window.

    A figure reached at the first iteration its window is full says only "at or before": the
    ratio of two such figures measures the window, not the activations, so it is never given.
    """
    missing = [a for a in ACTIVATIONS if results[a][key] is None]
    if missing:
        return None, f"{' and '.join(missing)} did not reach the target: no ratio"
    capped = [a for a in ACTIVATIONS if results[a][limited]]
    if capped:
        return None, (f"{' and '.join(capped)} reached the target at the first iteration the {window} window was full: "
                      "that figure is an upper bound set by the window, so no ratio")
    return results["tanh"][key] / results["relu"][key], None


def ratios(results: dict) -> tuple[dict | None, str | None]:
    """tanh / ReLU for iterations, epochs and seconds to the target (the paper's epoch-average); None and the reason when there is none."""
    value, reason = checked_ratio(results, "iterations_to_target", "window_limited", "one-epoch")
    if value is None:
        return None, reason
    return {k: results["tanh"][f"{k}_to_target"] / results["relu"][f"{k}_to_target"] for k in ("iterations", "epochs", "seconds")}, None


def run(config: RunConfig, mode: Mode | None = None) -> Path | None:
    """Both activations, one record (written by the main process only), in ``mode`` (default: the config's)."""
    if mode is None:
        with running_mode(config) as mode:
            return run(config, mode)
    device = mode.input_device
    arrays = open_image_arrays(config)
    if len(arrays.train_labels) < config.batch_size:
        raise UserError(f"--batch-size {config.batch_size}: the training split has only {len(arrays.train_labels)} images")
    data = prepare(arrays, config, mode)
    iterations_per_epoch = len(data.labels) // config.batch_size
    epochs = config.epochs or RELU_TANH_EPOCHS
    budget = epochs * iterations_per_epoch
    sweep_iterations = min(config.relu_tanh_sweep_iterations, budget)  # 0: every rate until the target (or the budget)
    initial = initial_weights(config, data.num_classes)
    parameters = sum(p.numel() for p in build_model(config, data.num_classes).parameters())
    run_id = new_run_id(config.harness, config.model, config.mode)
    say(config, f"run {run_id}: {config.model} ({parameters:,} parameters), ReLU vs tanh to {config.relu_tanh_target_error:g} training error on "
                f"{arrays.name} ({len(data.labels)} training images, {iterations_per_epoch} iterations per epoch), {config.mode} on {', '.join(mode.describe()['devices'])} x{mode.world_size}; "
                f"learning rates {config.relu_tanh_lr_grid()} " + (f"{sweep_iterations} iterations each, then the fastest alone" if sweep_iterations else "each until the target") + f", budget {epochs} epochs")
    flushing = torch.set_flush_denormal(True)  # False where the CPU cannot
    cudnn_before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    status, error = "complete", None
    results: dict = {}
    metrics: dict = {}
    started = time.time()
    try:
        for activation in ACTIVATIONS:
            results[activation] = train_activation(config, activation, data, mode, budget=budget, sweep_iterations=sweep_iterations, initial=initial)
        ratio, reason = ratios(results)
        metrics = {
            **{f"{k}_to_target": {a: results[a][f"{k}_to_target"] for a in ACTIVATIONS} for k in ("iterations", "epochs", "seconds")},
            "lr": {a: results[a]["lr"] for a in ACTIVATIONS},
            "ratio_tanh_to_relu": ratio,
            "ratio_reason": reason,
            "iterations_to_target_window": {a: results[a]["iterations_to_target_window"] for a in ACTIVATIONS},
        }
        metrics["ratio_tanh_to_relu_window"], metrics["ratio_window_reason"] = checked_ratio(
            results, "iterations_to_target_window", "window_limited_window", f"{config.relu_tanh_window}-iteration")
        say(config, f"tanh / ReLU: {ratio['iterations']:.2f}x the iterations, {ratio['seconds']:.2f}x the seconds (the paper: about 6x)"
                    if ratio else reason)
        fine = metrics["ratio_tanh_to_relu_window"]
        say(config, f"tanh / ReLU over a {config.relu_tanh_window}-iteration window: "
                    + (f"{fine:.2f}x the iterations" if fine is not None else metrics["ratio_window_reason"]))
    except BaseException as err:
        status, error = ended_by(err)
        raise
    finally:
        torch.set_flush_denormal(False)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_before
        record = {
            "run_id": run_id,
            "harness": "relu-tanh",
            "status": status,
            "error": error,
            "started": started,
            "finished": time.time(),
            "config": config.to_dict(),
            "config_not_applied": not_applied(config),
            "dataset": arrays.describe(),
            "model": {
                "name": config.model,
                "parameters": parameters,
                "input_size": data.input_size,
                "upsampled_from": arrays.train_images.shape[1] if data.input_size != arrays.train_images.shape[1] else None,
                "input_normalisation": data.normalisation,
                "source": NETWORK_SOURCES.get(config.model, "this project's model/ (not a Figure 1 candidate)"),
                "note": FIGURE1_NETWORK_NOTE,
            },
            "mode": mode.describe(),
            "protocol": {
                "target_error": config.relu_tanh_target_error,
                "training_error": TRAINING_ERROR,
                "window_iterations": config.relu_tanh_window,
                "training_error_window": TRAINING_ERROR_WINDOW,
                "lr_grid_step": GRID_STEP,
                "lr_grid_extensions": config.relu_tanh_grid_extensions,
                "budget_epochs": epochs,
                "budget_iterations": budget,
                "iterations_per_epoch": iterations_per_epoch,
                "batch_size": config.batch_size,
                "lr_grid": config.relu_tanh_lr_grid(),
                "sweep_iterations": sweep_iterations,
                "selection_rule": SELECTION_RULE,
                "momentum": config.momentum,
                "weight_decay": config.weight_decay,
                "dropout": 0.0,
                "augmentation": "none",
                "initial_weights": "the same for both activations and every rate: the network as initialised for ReLU"
                + (f" (--init {config.init})" if config.model == "alexnet" else ""),
                "flush_denormal": flushing,
                "cudnn_deterministic": device.type == "cuda",
            },
            "results": results,
            "metrics": metrics,
            "provenance": provenance(config.seed),
        }
        path = write_record(config.out, record) if mode.is_main else None  # the figures are already summed over processes
        if path:
            notice(True, f"record: {path}")
    return path
