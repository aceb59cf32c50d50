"""Arrival processes and lengths match their specification; the same seed gives the same stream."""

from __future__ import annotations

import numpy as np

from chiron_gym.workload import LengthDist, bulk_arrivals, poisson_arrivals


def test_poisson_rate_and_cv() -> None:
    """A long Poisson stream has the asked mean rate and exponential gaps (CV 1)."""
    t = poisson_arrivals(np.random.default_rng(1), rate_per_s=5.0, horizon_s=20_000.0)
    assert abs(len(t) / 20_000.0 - 5.0) / 5.0 < 0.02
    gaps = np.diff(t)
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.02
    assert np.all(gaps >= 0) and t[-1] < 20_000.0


def test_same_generator_seed_same_stream() -> None:
    """Reproducible from the seed alone."""
    a = poisson_arrivals(np.random.default_rng(9), 3.0, 100.0)
    b = poisson_arrivals(np.random.default_rng(9), 3.0, 100.0)
    np.testing.assert_array_equal(a, b)


def test_bulk_submissions_repeat_on_schedule() -> None:
    """Batch jobs: N requests at once, repeated every period within the horizon."""
    t = bulk_arrivals(count=1000, first_s=10.0, every_s=100.0, horizon_s=350.0)
    assert len(t) == 4000 and set(np.unique(t)) == {10.0, 110.0, 210.0, 310.0}


def test_lognormal_lengths_mean_and_cv() -> None:
    """Lognormal lengths have the asked mean and CV (before clipping)."""
    x = LengthDist(kind="lognormal", mean=500, cv=0.8, high=10**9).sample(
        np.random.default_rng(2), 200_000
    )
    assert abs(x.mean() - 500) / 500 < 0.02
    assert abs(x.std() / x.mean() - 0.8) < 0.03
