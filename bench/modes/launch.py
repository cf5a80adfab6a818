"""Start ``python -m bench.run`` on N local processes for ``--mode data-parallel --nproc N``.

This uses torchrun's own engine (``torch.distributed.launcher.elastic_launch``, what the
``torchrun --standalone`` command runs), handing it the command line as a list: no shell,
and none of our flags reach torchrun's parser. When one process fails, the agent stops the
others and the job ends with that process's error.

The same command runs under an outer torchrun for several nodes (see the README): when the
torchrun variables are already set, nothing is launched and the process is a worker.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Sequence

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from bench.errors import UserError
from bench.harness.resources import available_cores


def launch_config(nproc: int) -> LaunchConfig:
    """One node, ``nproc`` workers, a private rendezvous on a free local port (torchrun's ``--standalone``), no restarts."""
    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )


def launch(argv: Sequence[str], nproc: int) -> None:
    """Run ``python -m bench.run ARGV`` on ``nproc`` processes; ``UserError`` naming the failed rank if one fails."""
    # What the torchrun command line does and elastic_launch does not: bound each worker's
    # OpenMP/intra-op threads (torchrun sets 1; we give each its share of the cores). The workers
    # inherit this environment; a value the user set is kept.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // nproc)))
    try:
        elastic_launch(launch_config(nproc), sys.executable)("-u", "-m", "bench.run", *argv)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        what = failure.message.get("message", "").splitlines()[0] if isinstance(failure.message, dict) and failure.message.get("message") else f"exit code {failure.exitcode}"
        raise UserError(f"data-parallel rank {rank} failed ({what}); the other processes were stopped") from None
