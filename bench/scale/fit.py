"""Fit each measured cost against the number of images N, and project it to ImageNet.

Two fits per cost, by least squares over at least three sizes:

- the growth exponent k of ``cost ~ N**k`` (the slope in log-log): 1 is linear; a cost with
  k above ``SUPERLINEAR`` is flagged as growing faster than linearly;
- the line ``cost = a + b * N``, which gives the projection; a cost whose exponent is below
  ``CONSTANT`` (a compile, a pipeline's construction) does not grow with N, and is projected
  as its mean over the sizes (a line through noise would extrapolate the noise).

The projection to ``target`` images on c cores: costs spread over every core (``PARALLEL``:
the manifest's check, FFCV's conversion) are divided by ``c / measured_cores``, assuming each
core is as fast as this machine's and the work spreads perfectly (an optimistic bound); the
rest run on one core and do not change with c. The manifest's check decodes every file, and
the simulated tree's JPEGs are small: its projection is multiplied by the measured ratio of
the check's time on an ImageNet-sized JPEG to its time on a small one (``decode_ratio``).
"""

from __future__ import annotations

import numpy as np

SUPERLINEAR = 1.2  # a growth exponent above this is "faster than linear" (timing noise on a loaded machine stays below it)
CONSTANT = 0.5  # a growth exponent below this is "does not grow with N"
PARALLEL = ("scan", "ffcv.conversion")
DECODE_BOUND = ("scan",)
IMAGENET_TRAIN = 1_281_167


def growth_exponent(sizes: list[int], values: list[float]) -> float | None:
    """k in ``value ~ N**k``; None when a value is not positive (nothing to fit in log space)."""
    if len(sizes) < 2 or any(v is None or v <= 0 for v in values):
        return None
    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def linear_fit(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """``(a, b)`` of ``value = a + b * N``."""
    b, a = np.polyfit(np.asarray(sizes, dtype=float), np.asarray(values, dtype=float), 1)
    return float(a), float(b)


def fit_cost(name: str, sizes: list[int], values: list[float]) -> dict:
    k = growth_exponent(sizes, values)
    a, b = linear_fit(sizes, values)
    growth = "constant" if k is None or k < CONSTANT else "superlinear" if k > SUPERLINEAR else "linear"
    return {"cost": name, "exponent": k, "intercept": a, "slope": b, "mean": float(np.mean(values)), "growth": growth,
            "superlinear": growth == "superlinear", "parallel": name in PARALLEL}


def project(fit: dict, target: int, cores: int, measured_cores: int, decode_ratio: float = 1.0) -> float:
    """The fitted cost at ``target`` images on ``cores`` cores (see the module's docstring)."""
    if fit["growth"] == "constant":
        value = fit["mean"]
    else:
        value = max(0.0, fit["intercept"] + fit["slope"] * target)
    if fit["cost"] in DECODE_BOUND:
        value *= decode_ratio
    if fit["parallel"]:
        value *= measured_cores / cores
    return value


def fit_all(sizes: list[int], costs: list[dict]) -> list[dict]:
    """One fit per cost measured at every size (``costs[i]`` holds the costs at ``sizes[i]``)."""
    names = [n for n in costs[0] if all(c.get(n) is not None for c in costs)]
    return [fit_cost(n, sizes, [c[n] for c in costs]) for n in names]


def projections(fits: list[dict], target: int, cores: list[int], measured_cores: int, decode_ratio: float) -> list[dict]:
    return [{"cost": f["cost"], "cores": c, "value": project(f, target, c, measured_cores, decode_ratio)} for f in fits for c in cores]
