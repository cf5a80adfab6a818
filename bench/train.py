"""The paper's training recipe: SGD with momentum and weight decay, the learning rate divided
by 10 when the validation error stops improving (at most ``max_lr_drops`` times)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm

from bench.config import RunConfig
from bench.driver import unusable_gpus
from bench.errors import UserError
from bench.optim import PaperSGD
from bench.precision import autocast
from pipelines.base import Loader

if TYPE_CHECKING:
    from bench.modes.base import Mode
from pipelines.seeding import epoch_seed


PROGRESS_READ_S = 1.0  # the least time between two reads of the loss for the progress bar (each waits for the device)
_SAID: set[str] = set()  # the auto-fallback line, once per process


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when there is a GPU, else the CPU; an explicit CUDA device must exist.

    When torch sees no GPU although the machine has some (an NVIDIA driver too old for the CUDA
    torch was built for), ``auto`` says so in one line on stderr and ``cuda`` is that error."""
    if name == "auto":
        if torch.cuda.is_available():
            return normalise_device(torch.device("cuda"))
        why = unusable_gpus()
        if why and why not in _SAID:
            _SAID.add(why)
            print(f"--device auto: running on the CPU: {why}", file=sys.stderr, flush=True)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: {unusable_gpus() or 'no CUDA GPU is visible on this machine'}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type != "cpu":
        raise UserError(f"--device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return normalise_device(device)


def normalise_device(device: torch.device) -> torch.device:
    """``cuda`` (the current CUDA device) as ``cuda:N``, so that the same GPU always compares equal
    (``torch.device("cuda") == torch.device("cuda:0")`` is False)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return device


def make_optimizer(net: nn.Module, config: RunConfig, *, lr: float | None = None) -> torch.optim.SGD:
    """SGD with ``config.momentum`` and ``config.weight_decay`` at ``lr`` (default ``config.lr``).

    ``config.update_rule``: paper (eps inside the velocity, ``bench.optim.PaperSGD``) or torch
    (``torch.optim.SGD``). Biases are not decayed unless ``config.decay_biases``, as in
    cuda-convnet (no weight cost on biases) and Caffe (``decay_mult: 0``): two parameter
    groups, weights first, then biases (decay 0).
    """
    lr = config.lr if lr is None else lr
    weights, biases = [], []
    for name, p in net.named_parameters():
        (biases if name.endswith("bias") and not config.decay_biases else weights).append(p)
    groups = [{"params": weights}] + ([{"params": biases, "weight_decay": 0.0}] if biases else [])
    cls = PaperSGD if config.update_rule == "paper" else torch.optim.SGD
    return cls(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """Divide by 10 after ``lr_patience`` epochs without a lower validation error; never below lr / 10**max_lr_drops."""
    floor = config.lr * 0.1**config.max_lr_drops
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.1, patience=config.lr_patience, threshold=0.0, min_lr=floor * (1 - 1e-6)
    )


def step_schedule(scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau, val_top1_err: float) -> bool:
    """End of an epoch: step the schedule on its validation error; True when the rate was divided (``curves.lr_drops`` then records the epoch)."""
    groups = scheduler.optimizer.param_groups
    before = groups[0]["lr"]
    scheduler.step(val_top1_err)
    return groups[0]["lr"] < before


@dataclass
class EpochResult:
    """Sums over one epoch (so that processes can add theirs up), and its duration."""

    loss_sum: float
    wrong: int
    seen: int
    seconds: float

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen if self.seen else math.nan

    @property
    def top1_err(self) -> float:
        return self.wrong / self.seen if self.seen else math.nan

    @property
    def images_per_s(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else math.nan

    def summed(self, mode: "Mode") -> "EpochResult":
        """Totals over all processes of ``mode`` (the duration is this process's)."""
        loss_sum, wrong, seen = mode.sum_across([self.loss_sum, self.wrong, self.seen])
        return EpochResult(loss_sum, int(wrong), int(seen), self.seconds)


@dataclass
class History:
    """Per-epoch curves, as stored in checkpoints and records."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_top1_err: list[float] = field(default_factory=list)
    val_top1_err: list[float] = field(default_factory=list)
    val_top5_err: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    images_per_s: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    lr_drops: list[int] = field(default_factory=list)  # epochs after which the learning rate was divided by 10

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**{k: list(v) for k, v in d.items()})


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed torch's global generator (dropout) from (seed, epoch, rank): a resumed epoch draws what the original did."""
    torch.manual_seed(epoch_seed(seed, epoch) + rank)


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, *,
               precision: str = "fp32", channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on one batch; returns the loss and the logits (not synchronised: reading them waits for the device).

    Every harness trains through this function, so an execution mode changes it in one place.
    ``precision`` ``bf16`` runs the forward pass and the loss under bfloat16 autocast (``bench.precision``);
    ``channels_last`` gives the network NHWC batches (a no-op for a batch already in that format).
    """
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(precision, images.device):
        logits = net(images)
        loss = nn.functional.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def train_epoch(
    net: nn.Module,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    *,
    max_steps: int = 0,
    progress: bool = True,
    desc: str = "train",
    precision: str = "fp32",
    channels_last: bool = False,
) -> EpochResult:
    """One pass over ``loader`` (or ``max_steps`` batches); returns mean loss, training top-1 error and images/s.

    The loss and error sums stay on the device and are read once, at the end: a read per step
    (``loss.item()``) would make the CPU wait for the GPU before queueing the next step. The
    progress bar's loss is read at most once per ``PROGRESS_READ_S``, and only when a bar shows.
    """
    net.train()
    total = min(len(loader), max_steps) if max_steps else len(loader)
    loss_sum = wrong = None  # device tensors, made with the first batch
    seen = 0
    start = last_read = time.perf_counter()
    images = loader.num_samples * total // len(loader) if len(loader) else 0
    bar = tqdm(total=images or None, desc=desc, unit="img", disable=None if progress else True, leave=False, mininterval=PROGRESS_READ_S)
    try:
        for step, (images, labels) in enumerate(loader):
            if step >= total:
                break
            loss, logits = train_step(net, optimizer, images, labels, precision=precision, channels_last=channels_last)
            n = labels.shape[0]
            if loss_sum is None:
                loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
                wrong = torch.zeros((), dtype=torch.int64, device=labels.device)
            loss_sum += loss.detach().double() * n
            wrong += (logits.detach().argmax(dim=1) != labels).sum()
            seen += n
            bar.update(n)
            if not bar.disable and time.perf_counter() - last_read >= PROGRESS_READ_S:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                last_read = time.perf_counter()
    finally:
        bar.close()
    if loss_sum is None:
        return EpochResult(0.0, 0, 0, time.perf_counter() - start)
    return EpochResult(loss_sum.item(), int(wrong.item()), seen, time.perf_counter() - start)
