"""Kernels compiled the way FFCV compiles its own operations, once per process.

Each operation has two kernels that compute the same thing: one of plain loops, which numba
compiles in well under a second into fast code (array slicing in a parallel loop takes it
several seconds to compile), and one of numpy slicing, which the interpreter runs fast when
FFCV's compiler is off (the loops would take tens of milliseconds an image there). The tests
hold the two to each other, bit for bit.
"""

from __future__ import annotations

from typing import Callable

from ffcv.pipeline.compiler import Compiler

_COMPILED: dict[tuple[Callable, bool], Callable] = {}


def compiled(kernel: Callable) -> Callable:
    """``kernel`` through FFCV's ``Compiler`` as it is set now: numba's njit with FFCV's flags, parallel
    over the batch (``prange``) when FFCV runs more than one thread. Compiled once per process and
    reused by every Loader (FFCV's own operations compile again for each Loader).
    """
    key = (kernel, Compiler.num_threads > 1)
    if key not in _COMPILED:
        _COMPILED[key] = Compiler.compile(kernel)
    return _COMPILED[key]


def kernel_for(loops: Callable, vectorised: Callable) -> Callable:
    """The compiled loops when FFCV's compiler is on, else the numpy version."""
    return compiled(loops) if Compiler.is_enabled else vectorised
