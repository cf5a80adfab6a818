"""How the model computes: ``--precision fp32|tf32|bf16`` and ``--channels-last`` (issue 13).

- ``fp32``: float32 everywhere, TF32 off for matmuls *and* convolutions (torch leaves
  ``cudnn.allow_tf32`` on by default, so an unset run would not be fp32 on an A100/H100).
  The paper's arithmetic and the accuracy harness's default.
- ``tf32``: float32 tensors, TF32 tensor cores for matmuls and convolutions (Ampere and later).
- ``bf16``: ``torch.autocast`` to bfloat16 for the forward pass and the loss; weights, gradients
  and the optimizer stay float32 (no loss scaling is needed with bfloat16's range).

``channels_last`` stores the weights and the input batches NHWC, which cuDNN's tensor-core
kernels prefer. Throughput runs also turn ``cudnn.benchmark`` on (the fastest algorithm for the
fixed input shape); the accuracy harness keeps it off for determinism.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
from torch import nn

from bench.config import PRECISIONS  # noqa: F401 - the flag's choices, defined with the config


def set_precision(precision: str) -> None:
    """Set torch's global TF32 switches for ``precision`` (bf16's float32 parts use plain fp32)."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The forward pass's context: bfloat16 autocast for ``bf16``, nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def to_memory_format(net: nn.Module, channels_last: bool) -> nn.Module:
    return net.to(memory_format=torch.channels_last) if channels_last else net


def compute_settings() -> dict:
    """What torch is set to compute with now, for provenance."""
    cudnn = torch.backends.cudnn
    return {
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_version": cudnn.version() if cudnn.is_available() else None,
    }
