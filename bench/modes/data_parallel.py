"""Data parallelism with PyTorch DDP, one process per device, launched by torchrun.

NCCL on GPUs (rank r on ``cuda:LOCAL_RANK``), gloo on CPUs. Every pipeline shards its
samples by rank; gradients are averaged by DDP; the numbers a run reports (loss, errors,
images) are summed over ranks before anything is printed or recorded, and only rank 0
prints, writes records and writes checkpoints.

The global batch is the config's ``batch_size`` (the paper's 128) split evenly over the
ranks unless ``batch_scope`` is ``per-rank``; the record says which.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bench.config import cores_per_process
from bench.errors import UserError
from bench.modes.base import Mode, PeersSilent

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def under_torchrun() -> bool:
    """True inside a process started by torchrun (ours or the user's)."""
    return all(v in os.environ for v in TORCHRUN_VARIABLES)


class DataParallel(Mode):
    name = "data-parallel"

    def __init__(self, use_cuda: bool, *, batch_scope: str = "global", timeout_s: float = 600.0) -> None:
        if not under_torchrun():
            raise RuntimeError("DataParallel must run under torchrun (bench.modes.launch starts it)")
        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.batch_scope = batch_scope
        self.local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        # Intra-op threads per rank: OMP_NUM_THREADS as the launcher set it (torchrun: 1; bench.modes.launch:
        # the rank's share of the cores), else the share; never every core in every rank.
        self.threads = int(os.environ.get("OMP_NUM_THREADS") or cores_per_process())
        torch.set_num_threads(self.threads)
        if use_cuda:
            if self.local_rank >= torch.cuda.device_count():
                raise UserError(f"rank {self.rank}: local rank {self.local_rank} has no GPU ({torch.cuda.device_count()} visible)")
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
            self.backend = "nccl"
        else:
            self.device = torch.device("cpu")
            self.backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(self.backend, timeout=timedelta(seconds=timeout_s))
        # Mode.agree's own group: its question never pairs with a collective call of the work (DDP's
        # gradient buckets, a timing barrier) that a failed process left the others waiting in.
        self._agreement = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))

    @property
    def input_device(self) -> torch.device:
        return self.device

    def place(self, net: nn.Module) -> nn.Module:
        net = net.to(self.device)
        return DistributedDataParallel(net, device_ids=[self.device] if self.device.type == "cuda" else None)

    def single_state_dict(self, placed: nn.Module) -> dict[str, torch.Tensor]:
        return placed.module.state_dict()

    def load_single_state_dict(self, placed: nn.Module, state: dict[str, torch.Tensor]) -> None:
        placed.module.load_state_dict(state)

    def per_process_batch(self, batch_size: int) -> int:
        if self.batch_scope == "per-rank":
            return batch_size
        if batch_size % self.world_size:
            raise UserError(f"--batch-size {batch_size} does not split evenly over {self.world_size} processes")
        return batch_size // self.world_size

    def _reduce(self, values: Sequence[float], op: dist.ReduceOp) -> list[float]:
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device if self.backend == "nccl" else "cpu")
        dist.all_reduce(t, op=op)
        return t.tolist()

    def sum_across(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.SUM)

    def max_across(self, values: Sequence[float]) -> list[float]:
        return self._reduce(values, dist.ReduceOp.MAX)

    def barrier(self) -> None:
        dist.barrier()

    def agree(self, failed: bool, *, within_s: float | None = None) -> bool:
        answer = torch.tensor([1.0 if failed else 0.0])
        work = dist.all_reduce(answer, op=dist.ReduceOp.MAX, group=self._agreement, async_op=True)
        try:
            work.wait(timeout=timedelta(seconds=within_s)) if within_s is not None else work.wait()
        except RuntimeError as err:  # gloo: "Operation timed out!"
            within = f"{within_s:g} s" if within_s is not None else "the job's timeout"
            raise PeersSilent(f"not every process answered within {within} ({err})") from None
        return bool(answer.item())

    def describe(self) -> dict:
        return {**super().describe(), "backend": self.backend, "rank_devices": f"{self.device.type} per rank", "batch_scope": self.batch_scope,
                "local_world_size": self.local_world_size, "intra_op_threads_per_rank": self.threads}

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
