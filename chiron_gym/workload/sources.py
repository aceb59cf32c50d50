"""Arrival kinds a scenario may name, their parameters, and the generator of each.

``ARRIVAL_KINDS[kind]`` maps each parameter to ``(required, default)``; the scenario loader
validates against it, and ``arrival_times`` draws the times.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from chiron_gym.workload.arrivals import (
    RateCurve,
    bulk_arrivals,
    diurnal_curve,
    flash_crowd_curve,
    gamma_arrivals,
    onoff_arrivals,
    poisson_arrivals,
    rate_curve_arrivals,
)

_REQ = (True, None)

ARRIVAL_KINDS: dict[str, dict[str, tuple[bool, Any]]] = {
    "poisson": {"rate_per_s": _REQ},
    "gamma": {"rate_per_s": _REQ, "cv": _REQ},
    "onoff": {
        "rate_on_per_s": _REQ,
        "mean_on_s": _REQ,
        "mean_off_s": _REQ,
        "rate_off_per_s": (False, 0.0),
    },
    "diurnal": {
        "mean_rate_per_s": _REQ,
        "amplitude": _REQ,
        "period_s": (False, 86_400.0),
        "phase_s": (False, 0.0),
        "cv": (False, 1.0),
    },
    "flash_crowd": {
        "base_rate_per_s": _REQ,
        "peak_rate_per_s": _REQ,
        "start_s": _REQ,
        "hold_s": _REQ,
        "cv": (False, 1.0),
    },
    "piecewise": {"starts_s": _REQ, "rates_per_s": _REQ, "cv": (False, 1.0)},
    "servegen": {"path": _REQ, "rate_scale": (False, 1.0)},
    "bulk": {"count": _REQ, "first_s": (False, 0.0), "every_s": (False, None)},
}


def arrival_times(
    kind: str, p: dict[str, Any], rng: np.random.Generator, horizon_s: float
) -> npt.NDArray[np.float64]:
    """Arrival times of one source on ``[0, horizon_s)``."""
    if kind == "poisson":
        return poisson_arrivals(rng, p["rate_per_s"], horizon_s)
    if kind == "gamma":
        return gamma_arrivals(rng, p["rate_per_s"], p["cv"], horizon_s)
    if kind == "onoff":
        return onoff_arrivals(
            rng,
            rate_on_per_s=p["rate_on_per_s"],
            mean_on_s=p["mean_on_s"],
            mean_off_s=p["mean_off_s"],
            rate_off_per_s=p["rate_off_per_s"],
            horizon_s=horizon_s,
        )
    if kind == "diurnal":
        curve = diurnal_curve(
            p["mean_rate_per_s"], p["amplitude"], p["period_s"], horizon_s, phase_s=p["phase_s"]
        )
        return rate_curve_arrivals(rng, curve, horizon_s, p["cv"])
    if kind == "flash_crowd":
        curve = flash_crowd_curve(
            p["base_rate_per_s"], p["peak_rate_per_s"], p["start_s"], p["hold_s"]
        )
        return rate_curve_arrivals(rng, curve, horizon_s, p["cv"])
    if kind == "piecewise":
        curve = RateCurve(tuple(p["starts_s"]), tuple(p["rates_per_s"]))
        return rate_curve_arrivals(rng, curve, horizon_s, p["cv"])
    if kind == "servegen":
        from chiron_gym.workload.trace import read_servegen

        curve = read_servegen(p["path"])
        scaled = RateCurve(
            curve.starts_s, tuple(r * p["rate_scale"] for r in curve.rates_per_s), curve.cvs
        )
        return rate_curve_arrivals(rng, scaled, horizon_s)
    if kind == "bulk":
        return bulk_arrivals(
            count=p["count"], first_s=p["first_s"], every_s=p["every_s"], horizon_s=horizon_s
        )
    raise ValueError(f"unknown arrival kind {kind!r}")
