"""Arrival processes: times in seconds within ``[0, horizon_s)``, sorted."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def poisson_arrivals(
    rng: np.random.Generator, rate_per_s: float, horizon_s: float
) -> npt.NDArray[np.float64]:
    """A homogeneous Poisson process of ``rate_per_s`` over ``[0, horizon_s)``."""
    if rate_per_s < 0 or horizon_s < 0:
        raise ValueError("rate_per_s and horizon_s must be >= 0")
    if rate_per_s == 0 or horizon_s == 0:
        return np.empty(0)
    # Draw in chunks of exponential gaps: exact, and the stream depends only on the rate.
    times: list[npt.NDArray[np.float64]] = []
    t = 0.0
    chunk = max(16, int(rate_per_s * horizon_s * 1.1) + 16)
    while t < horizon_s:
        gaps = rng.exponential(1.0 / rate_per_s, size=chunk)
        ts = t + np.cumsum(gaps)
        times.append(ts)
        t = float(ts[-1])
    out = np.concatenate(times)
    return out[out < horizon_s]


def bulk_arrivals(
    *, count: int, first_s: float, every_s: float | None, horizon_s: float
) -> npt.NDArray[np.float64]:
    """Batch jobs: ``count`` requests submitted at once at ``first_s``, repeated ``every_s``."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if every_s is not None and every_s <= 0:
        raise ValueError("every_s must be > 0")
    starts = [first_s] if every_s is None else list(np.arange(first_s, horizon_s, every_s))
    starts = [s for s in starts if s < horizon_s]
    return np.repeat(np.asarray(starts, dtype=np.float64), count)
