"""Paired comparisons over traffic seeds: the mean difference and its bootstrap interval.

Two agents that played the same seeds saw the same requests, so their difference is taken seed by
seed (paired) and the seeds are resampled with replacement (a percentile bootstrap, ``n_boot``
resamples, a fixed generator seed so that tables are the same bytes on a rerun). With 5 seeds the
interval is coarse: it says how far the seeds disagree, not more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_interval(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95, n_boot: int = 10_000
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired seeds and its ``level`` percentile bootstrap interval."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired samples must have the same, non-zero length ({len(a)}, {len(b)})")
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(0)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(d.mean()), float(lo), float(hi)


def verdict(mean: float, lo: float, hi: float, higher_is_better: bool = True) -> str:
    """``better``/``worse`` when the interval excludes 0, else ``tie`` (within the interval)."""
    if lo > 0:
        return "better" if higher_is_better else "worse"
    if hi < 0:
        return "worse" if higher_is_better else "better"
    return "tie"


__all__ = ["paired_interval", "verdict"]
