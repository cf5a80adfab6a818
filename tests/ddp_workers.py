"""Functions run inside real DDP worker processes (started by torchrun's engine) by tests/test_modes.py."""

from __future__ import annotations

import torch
from torch import nn

from bench.modes.data_parallel import DataParallel
from model.alexnet import AlexNet

BATCH = 4


def _model() -> AlexNet:
    torch.manual_seed(0)
    return AlexNet(num_classes=10, init="he", dropout=0.0).double()  # no dropout: the step is deterministic


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 227, 227, generator=g, dtype=torch.float64), torch.randint(0, 10, (BATCH,), generator=g)


def _step(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss = nn.functional.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def ddp_step_difference() -> float:
    """One DDP step with this rank's half of the batch; the largest difference from a one-process step on the whole batch."""
    mode = DataParallel(use_cuda=False)
    try:
        x, y = _batch()
        per_rank = mode.per_process_batch(BATCH)
        shard = slice(mode.rank * per_rank, (mode.rank + 1) * per_rank)
        placed = mode.place(_model())
        _step(placed, x[shard], y[shard])
        reference = _model()
        _step(reference, x, y)
        got = mode.single_state_dict(placed)
        return max((got[k] - v).abs().max().item() for k, v in reference.state_dict().items())
    finally:
        mode.close()


def _two_point_sweep(mode: DataParallel, root: str, cache_dir: str, out: str) -> list[str]:
    """Batch 4 then 8, tiny repeats, on the CPU; the records written (rank 0) or [] (the others)."""
    from bench.config import RunConfig
    from bench.harness import throughput

    config = RunConfig.with_preset(dict(harness="throughput", mode="data-parallel", device="cpu", data=root, cache_dir=cache_dir, out=out,
                                        batch_size=4, sweep_batch_sizes="4,8", workers=0, warmup_batches=1, batches_per_repeat=1,
                                        loader_batches_per_repeat=1, repeats=3, ceiling_images=4, progress=False, preset="embedded-cpu"))
    try:
        return [str(p) for p in throughput.run_sweep(config, mode, config.sweep_axes())]
    finally:
        mode.close()


def sweep_with_a_ceiling_failing_on_rank_0(root: str, cache_dir: str, out: str) -> list[str]:
    """A two-point throughput sweep in which rank 0's decode ceiling (measured by rank 0 alone) fails
    at the first point; returns the records written (rank 0) or [] (rank 1). Issue 13 defect 8."""
    from bench.harness import throughput

    mode = DataParallel(use_cuda=False, timeout_s=60)
    real, calls = throughput.decode_ceiling, []

    def fails_first(*args, **kwargs):  # injects the failure; the ranks' agreement is what is tested
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the nvJPEG ceiling failed on rank 0")
        return real(*args, **kwargs)

    throughput.decode_ceiling = fails_first
    return _two_point_sweep(mode, root, cache_dir, out)


def sweep_with_a_step_failing_on_rank_1(root: str, cache_dir: str, out: str) -> list[str]:
    """A two-point throughput sweep in which rank 1 alone fails at its second training step of the
    first point, while rank 0 waits for it inside DDP's gradient all-reduce. Issue 13's limit:
    rank 0 waited out the process group's timeout and recorded that timeout as the point's error."""
    from bench.harness import throughput

    mode = DataParallel(use_cuda=False, timeout_s=60)
    throughput.POINT_AGREEMENT_S = 5.0  # the fix answers within this; without it the job waits the 60 s above
    real, calls = throughput.train_step, []

    def fails_on_rank_1(*args, **kwargs):  # injects the failure; how the job ends is what is tested
        calls.append(1)
        if mode.rank == 1 and len(calls) == 2:
            raise RuntimeError("a training step failed on rank 1 alone")
        return real(*args, **kwargs)

    throughput.train_step = fails_on_rank_1
    return _two_point_sweep(mode, root, cache_dir, out)
