"""The relu-tanh harness's training: the data as tensors on the device, one network trained
with one learning rate (``Trial``), and the sweep that picks each activation's rate.
What is measured and why is in ``bench.harness.relu_tanh``'s docstring."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from bench.builders import build_model
from bench.config import RunConfig
from bench.console import say
from bench.data.cifar import ImageArrays
from bench.harness.execution import to_device
from bench.modes import Mode
from bench.train import make_optimizer, train_step
from model.convnet4 import INPUT_CONVENTION
from pipelines.seeding import epoch_permutation

# models that take the 32x32 images as they are, and the input they expect
NATIVE_SIZE_MODELS = {"convnet4": INPUT_CONVENTION, "conv_local_11pct": INPUT_CONVENTION, "conv_local_13pct": INPUT_CONVENTION}
GRID_STEP = 3.0  # a rate at the grid's edge: the next rate tried beyond it is 3x (or 1/3 of) it


@dataclasses.dataclass(frozen=True)
class TrainingData:
    images: torch.Tensor  # N x 3 x 32 x 32 float, normalised, on the device
    labels: torch.Tensor  # N int64, on the device
    num_classes: int
    normalisation: str
    input_size: int  # what the network is fed (the images are upsampled to it when larger)


def prepare(arrays: ImageArrays, config: RunConfig, mode: Mode) -> TrainingData:
    """The training split as float tensors on the device, normalised as the model expects."""
    x = torch.from_numpy(arrays.train_images).permute(0, 3, 1, 2).float()
    if NATIVE_SIZE_MODELS.get(config.model) == "cuda-convnet":
        x -= x.mean(dim=0, keepdim=True)
        normalisation = "cuda-convnet: 0-255 pixels minus the training set's mean image"
        input_size = x.shape[-1]
    else:
        x /= 255.0
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        x = (x - mean) / std
        normalisation = "per-channel mean and std of the training set, pixels in [0, 1]"
        input_size = config.crop
    images, labels = to_device((x, torch.from_numpy(arrays.train_labels)), mode)
    return TrainingData(images, labels, len(arrays.classes), normalisation, input_size)


def build_net(config: RunConfig, activation: str, num_classes: int) -> torch.nn.Module:
    """The network with ``activation``, unregularised (the AlexNets without dropout), initialised from the seed."""
    overrides = {} if config.model in NATIVE_SIZE_MODELS else {"dropout": 0.0}
    return build_model(dataclasses.replace(config, activation=activation), num_classes, **overrides)


def initial_weights(config: RunConfig, num_classes: int) -> dict[str, torch.Tensor]:
    """The weights both activations start from: the network as initialised for ReLU.

    An initialisation may depend on the activation (He's gain is sqrt(2) for ReLU, 5/3 for
    tanh); Figure 1 compares the units alone, so tanh starts from exactly ReLU's weights.
    """
    return build_net(config, "relu", num_classes).state_dict()


class Trial:
    """One network trained with one learning rate, an iteration at a time, its curves kept."""

    def __init__(self, config: RunConfig, activation: str, lr: float, data: TrainingData, mode: Mode, *, target: float,
                 initial: dict[str, torch.Tensor]) -> None:
        self.config, self.activation, self.lr, self.data, self.mode, self.target = config, activation, lr, data, mode, target
        self.device = mode.input_device
        net = build_net(config, activation, data.num_classes)
        net.load_state_dict(initial)  # the same start for every rate and both activations
        self.net = mode.place(net).train()
        self.optimizer = make_optimizer(self.net, config, lr=lr)  # the learning rate is constant here: the update rules agree
        self.iterations_per_epoch = len(data.labels) // config.batch_size
        self.window: deque[float] = deque(maxlen=self.iterations_per_epoch)
        self.fine: deque[float] = deque(maxlen=config.relu_tanh_window)  # the finer measure: a fixed window in iterations
        self.reached_fine: int | None = None
        self.iteration = 0
        self.seconds = 0.0
        self.reached: int | None = None
        self.reached_seconds: float | None = None
        self.diverged = False
        self.curves: dict[str, list] = {"batch_error": [], "batch_loss": [], "window_error": [], "seconds": []}
        self._order: torch.Tensor | None = None

    @property
    def window_error(self) -> float:
        return float(np.mean(self.window)) if self.window else math.nan

    def step(self) -> None:
        epoch, position = divmod(self.iteration, self.iterations_per_epoch)
        if position == 0:
            self._order = torch.from_numpy(epoch_permutation(len(self.data.labels), self.config.seed, epoch)).to(self.device)
        start = time.perf_counter()
        index = self._order[position * self.config.batch_size : (position + 1) * self.config.batch_size]
        index = index[self.mode.rank :: self.mode.world_size]  # data-parallel: this process's share of the batch
        images, labels = self.data.images[index], self.data.labels[index]
        if self.data.input_size != images.shape[-1]:
            images = F.interpolate(images, size=self.data.input_size, mode="bilinear", align_corners=False)
        loss, logits = train_step(self.net, self.optimizer, images, labels)
        n = labels.shape[0]
        wrong, seen, loss_sum = self.mode.sum_across([int((logits.argmax(dim=1) != labels).sum()), n, loss.item() * n])  # waits for the device
        error, loss_value = wrong / seen, loss_sum / seen
        self.seconds += time.perf_counter() - start
        self.iteration += 1
        self.window.append(error)
        self.fine.append(error)
        self.curves["batch_error"].append(error)
        self.curves["batch_loss"].append(loss_value)
        self.curves["window_error"].append(self.window_error)
        self.curves["seconds"].append(self.seconds)
        if not math.isfinite(loss_value):
            self.diverged = True
            return
        if self.reached_fine is None and len(self.fine) == self.fine.maxlen and np.mean(self.fine) <= self.target:
            self.reached_fine = self.iteration
        if self.reached is None and len(self.window) == self.window.maxlen and self.window_error <= self.target:
            self.reached, self.reached_seconds = self.iteration, self.seconds

    def run_until(self, iterations: int) -> int:
        """Train until ``iterations`` in all, the target, or divergence, whichever comes first; returns the steps taken."""
        start = self.iteration
        while self.iteration < iterations and self.reached is None and not self.diverged:
            self.step()
        return self.iteration - start

    @property
    def finished(self) -> bool:
        return self.reached is not None or self.diverged

    def rank(self) -> tuple[int, float]:
        """Smaller is faster: (0, iterations to the target) if reached, else (1, training error; inf if diverged)."""
        if self.reached is not None:
            return (0, float(self.reached))
        return (1, math.inf if self.diverged or not math.isfinite(self.window_error) else self.window_error)

    def summary(self) -> dict:
        return {
            "lr": self.lr,
            "iterations": self.iteration,
            "training_error": None if math.isnan(self.window_error) else self.window_error,
            "reached_at_iteration": self.reached,
            "reached_at_iteration_window": self.reached_fine,
            "diverged": self.diverged,
            "seconds": self.seconds,
        }

    def epoch_curves(self) -> dict:
        """Per complete epoch: the mean minibatch error and loss (the figure's points)."""
        n = self.iterations_per_epoch
        epochs = self.iteration // n
        err, loss = self.curves["batch_error"], self.curves["batch_loss"]
        return {
            "epoch": list(range(1, epochs + 1)),
            "train_error": [float(np.mean(err[e * n : (e + 1) * n])) for e in range(epochs)],
            "train_loss": [float(np.mean(loss[e * n : (e + 1) * n])) for e in range(epochs)],
            "seconds": [self.curves["seconds"][(e + 1) * n - 1] for e in range(epochs)],
        }


def grid_edge(trials: list[Trial], best: Trial) -> int:
    """+1 when ``best`` has the highest rate tried, -1 the lowest, 0 inside the grid (or a grid of one)."""
    lrs = sorted(t.lr for t in trials)
    if len(lrs) < 2:
        return 0
    return 1 if best.lr == lrs[-1] else -1 if best.lr == lrs[0] else 0


def sweep_and_train(config: RunConfig, activation: str, data: TrainingData, mode: Mode, *, budget: int, sweep_iterations: int,
                    initial: dict[str, torch.Tensor]) -> tuple[Trial, list[dict], list[float]]:
    """Sweep the learning rates for one activation, continue the fastest to the target or the budget.

    When the fastest rate is at the grid's edge, the grid grows in that direction by a factor
    of ``GRID_STEP`` at a time, at most ``config.relu_tanh_grid_extensions`` times, each new
    rate from the same start, until the chosen rate is inside. Returns the winner, the sweep
    table (every rate tried, in the order tried) and the rates added.
    """
    target = config.relu_tanh_target_error
    trials = [Trial(config, activation, lr, data, mode, target=target, initial=initial) for lr in config.relu_tanh_lr_grid()]
    limit = sweep_iterations or budget
    chunk = trials[0].iterations_per_epoch
    added: list[float] = []

    def stop() -> int:
        return min([limit, *(t.reached for t in trials if t.reached is not None)])

    # Every rate advances an epoch at a time, so no rate runs past the iteration at which another
    # already reached the target (it can no longer be faster; a tie goes to the lower rate). A rate
    # added later runs to the same point; the stopping point never moves later, so a rate once
    # stopped never needs more steps.
    with tqdm(total=len(trials) * limit, desc=f"{activation} sweep", unit="it", disable=not config.progress, leave=False, mininterval=1.0) as bar:
        while True:
            while any(not t.finished and t.iteration < stop() for t in trials):
                for trial in trials:
                    if not trial.finished and trial.iteration < stop():
                        bar.update(trial.run_until(min(trial.iteration + chunk, stop())))
                bar.set_postfix_str(", ".join(f"{t.lr:g}: {t.window_error:.3f}" for t in trials), refresh=False)
            best = min(trials, key=lambda t: (t.rank(), t.lr))
            edge = grid_edge(trials, best)
            if not edge or len(added) >= config.relu_tanh_grid_extensions:
                break
            lr = best.lr * GRID_STEP**edge
            say(config, f"{activation}: lr {best.lr:g} is at the grid's {'top' if edge > 0 else 'bottom'}; trying {lr:g}")
            for t in trials:
                if t is not best:
                    t.net = t.optimizer = None  # they can no longer win or run: free their networks
            added.append(lr)
            trials.append(Trial(config, activation, lr, data, mode, target=target, initial=initial))
            bar.total += limit
    sweep = [{**t.summary(), "stopped_at": stop()} for t in trials]
    for t in trials:
        say(config, f"{activation}, lr {t.lr:g}: " + (f"reached {target:g} at iteration {t.reached}" if t.reached
                    else f"diverged at iteration {t.iteration}" if t.diverged else f"training error {t.window_error:.3f} after {t.iteration} iterations"))
    best = min(trials, key=lambda t: (t.rank(), t.lr))
    del trials  # only the winner's network is kept
    if not best.finished and best.iteration < budget:
        with tqdm(total=budget, initial=best.iteration, desc=f"{activation} lr {best.lr:g}", unit="it", disable=not config.progress,
                  leave=False, mininterval=1.0) as bar:
            while best.iteration < budget and not best.finished:
                bar.update(best.run_until(min(best.iteration + chunk, budget)))
                bar.set_postfix(error=f"{best.window_error:.3f}", refresh=False)
    return best, sweep, added
