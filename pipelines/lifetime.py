"""Worker processes that end with the process that started them.

A process killed by a signal (SIGKILL, or SIGTERM from torchrun's agent stopping a data-parallel
job) runs no clean-up, so its worker processes (DALI's feed workers, a ``ProcessPoolExecutor``'s)
are left waiting on queues that nobody will fill, holding the run's output pipes open. A worker
calls ``die_with`` first thing; ``worker_pool`` is a ``ProcessPoolExecutor`` whose workers do.
"""

from __future__ import annotations

import ctypes
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(parent: int) -> None:
    """In a worker process: be killed when ``parent``, the process that started it, dies.

    The worker asks Linux for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``), and exits at
    once if that already happened. Linux sends the signal when the parent's *thread* that started
    the worker ends: start workers from a thread that lives as long as they are needed (DALI
    starts its feed workers in ``Pipeline.build``, which the loader calls from the iterating
    thread; a ``ProcessPoolExecutor`` from the thread that submits). A no-op where there is no
    ``prctl`` (not Linux).
    """
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    if prctl is None:
        return
    if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def _start_worker(parent: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    die_with(parent)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(max_workers: int, *, mp_context: Any = None, initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` whose workers die with this process (``die_with``), then run ``initializer``."""
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=mp_context, initializer=_start_worker,
                               initargs=(os.getpid(), initializer, initargs))
