"""The README's multi-node command, as far as one machine allows: two torchrun agents on 127.0.0.1
(two "nodes", one process each) meeting through a c10d rendezvous, gloo, each node with its own cache."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_shard_the_data_and_rank_0_alone_writes(cli_env, small_root, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"test-{port}", "--max-restarts", "0",
               "-m", "bench.run", "--mode", "data-parallel", "--data", str(small_root), "--out", str(tmp_path / "out"),
               "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--workers", "0", "--no-ten-crop", "--no-progress",
               "--lighting-stats", "imagenet"]
    nodes = [subprocess.Popen(command, cwd=REPO, env={**cli_env, "ALEXNET_BENCH_CACHE": str(tmp_path / f"cache-node{i}")},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "out" / "records").glob("*.json")]  # rank 0 only
    assert record["mode"]["world_size"] == 2 and record["mode"]["backend"] == "gloo"
    assert record["mode"]["global_batch"] == 8 and record["mode"]["batch_per_process"] == 4
    assert record["metrics"]["val_samples"] == 16  # every validation sample once across the two nodes
    assert len(list((tmp_path / "out" / "checkpoints").glob("*.pt"))) == 1
    for i in range(2):  # each node checked the data into its own cache
        assert list((tmp_path / f"cache-node{i}" / "manifests").glob("*.json"))
