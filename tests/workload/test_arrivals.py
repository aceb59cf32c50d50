"""Arrival processes and lengths match their specification; the same seed gives the same stream."""

from __future__ import annotations

from pathlib import Path

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


def _cv(t: np.ndarray) -> float:
    g = np.diff(t)
    return float(g.std() / g.mean())


def test_gamma_renewal_rate_and_cv() -> None:
    """Gamma renewal: the asked mean rate and inter-arrival CV, bursty and regular alike."""
    from chiron_gym.workload.arrivals import gamma_arrivals

    for cv in (0.5, 4.0):
        t = gamma_arrivals(np.random.default_rng(3), 10.0, cv, 50_000.0)
        assert abs(len(t) / 50_000.0 - 10.0) / 10.0 < 0.05, cv
        assert abs(_cv(t) - cv) / cv < 0.05, (cv, _cv(t))


def test_rate_curve_follows_the_curve() -> None:
    """Time rescaling: each piece of a rate curve gets its rate (counts within 4 sigma)."""
    from chiron_gym.workload.arrivals import RateCurve, rate_curve_arrivals

    curve = RateCurve((0.0, 1000.0, 3000.0), (2.0, 10.0, 0.5))
    t = rate_curve_arrivals(np.random.default_rng(4), curve, 5000.0)
    for lo, hi, rate in ((0, 1000, 2.0), (1000, 3000, 10.0), (3000, 5000, 0.5)):
        n = np.sum((t >= lo) & (t < hi))
        expected = rate * (hi - lo)
        assert abs(n - expected) < 4 * np.sqrt(expected), (lo, n, expected)


def test_a_measured_window_holds_its_count_at_any_cv() -> None:
    """A rate curve with per-window CVs (a ServeGen file) gives each window its expected count
    (the integer either side of it, the mean over seeds equal to it) however bursty the window;
    a renewal process restarted per window drew 11 times too many at CV 76. CV 1 places them
    uniformly, and a high CV gathers them into bursts."""
    from scipy import stats

    from chiron_gym.workload.arrivals import RateCurve, rate_curve_arrivals

    curve = RateCurve((0.0, 25.0, 50.0, 75.0), (6.02, 1.0, 0.0, 40.0), (76.0, 1.0, 3.0, 5.0))
    counts = []
    for seed in range(400):
        t = rate_curve_arrivals(np.random.default_rng(seed), curve, 90.0)
        assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 90.0
        edges = ((0, 25), (25, 50), (50, 75), (75, 90))
        got = [int(np.sum((t >= lo) & (t < hi))) for lo, hi in edges]
        assert got[1:] == [25, 0, 600], got  # 600 = 40 req/s x 15 s: the horizon cuts the window
        assert got[0] in (150, 151), got
        counts.append(got[0])
    assert abs(np.mean(counts) - 150.5) < 0.1
    rng = np.random.default_rng(1)
    uniform = rate_curve_arrivals(rng, RateCurve((0.0,), (50.0,), (1.0,)), 100.0)
    assert stats.kstest(uniform / 100.0, "uniform").pvalue > 1e-3
    bursty = rate_curve_arrivals(rng, RateCurve((0.0,), (50.0,), (8.0,)), 100.0)
    assert _cv(uniform) < 1.1 and _cv(bursty) > 4.0, (_cv(uniform), _cv(bursty))


def test_diurnal_peak_and_trough() -> None:
    """A diurnal sinusoid puts its peak and trough where the phase says."""
    from chiron_gym.workload.arrivals import diurnal_curve, rate_curve_arrivals

    day = 3600.0
    curve = diurnal_curve(5.0, 0.8, day, 20 * day)
    t = rate_curve_arrivals(np.random.default_rng(5), curve, 20 * day)
    phase = (t % day) / day
    peak = np.sum((phase > 0.2) & (phase < 0.3))  # sin peaks at a quarter period
    trough = np.sum((phase > 0.7) & (phase < 0.8))
    assert abs(len(t) / (20 * day) - 5.0) < 0.1
    assert peak / trough > (1 + 0.8 * 0.95) / (1 - 0.8 * 0.95) * 0.8


def test_flash_crowd_steps() -> None:
    from chiron_gym.workload.arrivals import flash_crowd_curve, rate_curve_arrivals

    curve = flash_crowd_curve(2.0, 30.0, 1000.0, 500.0)
    t = rate_curve_arrivals(np.random.default_rng(6), curve, 3000.0, cv=1.0)
    during = np.sum((t >= 1000) & (t < 1500)) / 500.0
    before = np.sum(t < 1000) / 1000.0
    after = np.sum(t >= 1500) / 1500.0
    assert abs(during - 30) < 2 and abs(before - 2) < 0.4 and abs(after - 2) < 0.4


def test_onoff_mean_rate() -> None:
    """Markov-modulated on/off: mean rate = on-rate x fraction of time on; burstier than Poisson."""
    from chiron_gym.workload.arrivals import onoff_arrivals

    t = onoff_arrivals(
        np.random.default_rng(7),
        rate_on_per_s=20.0,
        mean_on_s=30.0,
        mean_off_s=90.0,
        horizon_s=200_000.0,
    )
    assert abs(len(t) / 200_000.0 - 5.0) / 5.0 < 0.08
    assert _cv(t) > 1.5


def test_same_seed_same_stream_for_every_kind() -> None:
    from chiron_gym.workload.sources import ARRIVAL_KINDS, arrival_times

    params = {
        "poisson": {"rate_per_s": 3.0},
        "gamma": {"rate_per_s": 3.0, "cv": 2.0},
        "onoff": {
            "rate_on_per_s": 5.0,
            "mean_on_s": 10.0,
            "mean_off_s": 10.0,
            "rate_off_per_s": 0.0,
        },
        "diurnal": {
            "mean_rate_per_s": 3.0,
            "amplitude": 0.5,
            "period_s": 600.0,
            "phase_s": 0.0,
            "cv": 1.0,
        },
        "flash_crowd": {
            "base_rate_per_s": 1.0,
            "peak_rate_per_s": 5.0,
            "start_s": 100.0,
            "hold_s": 50.0,
            "cv": 1.0,
        },
        "piecewise": {"starts_s": [0.0, 300.0], "rates_per_s": [1.0, 4.0], "cv": 1.5},
        "bulk": {"count": 10, "first_s": 0.0, "every_s": 200.0},
    }
    assert set(params) == set(ARRIVAL_KINDS) - {"servegen", "closed"}
    # a closed loop's clients send at 0; the others are sent as requests end (inf until then)
    closed = arrival_times(
        "closed", {"concurrency": 3, "requests": 5}, np.random.default_rng(11), 1.0
    )
    np.testing.assert_array_equal(closed, [0.0, 0.0, 0.0, np.inf, np.inf])
    for kind, p in params.items():
        a = arrival_times(kind, p, np.random.default_rng(11), 1000.0)
        b = arrival_times(kind, p, np.random.default_rng(11), 1000.0)
        np.testing.assert_array_equal(a, b)
        assert len(a) > 0 and np.all(np.diff(a) >= 0) and a[-1] < 1000.0, kind


def test_empirical_lengths_reproduce_their_table() -> None:
    """Sampling a shipped quantile table gives back its quantiles."""
    from chiron_gym.workload.tables import length_dist, names

    assert {"azure-code", "azure-conv", "arxiv-summarization"} <= set(names())
    d = length_dist("azure-conv", "prompt")
    x = d.sample(np.random.default_rng(8), 400_000)
    for q in (0.1, 0.5, 0.9):
        want = np.interp(q, d.probs, d.values)
        assert abs(np.quantile(x, q) - want) / want < 0.02, q


def test_a_servegen_replay_from_start_s_is_the_file_from_that_window(tmp_path: Path) -> None:
    """``start_s`` replays the rate file from the window holding it: the same draws as a file
    that begins there; past the file's last window it is refused, naming the field."""
    from chiron_gym.workload.arrivals import RateCurve
    from chiron_gym.workload.sources import ServeGen
    from chiron_gym.workload.trace import write_servegen

    starts = tuple(600.0 * k for k in range(6))
    full = RateCurve(starts, (1.0, 0.0, 3.0, 0.5, 2.0, 1.0), (1.0, 1.0, 2.0, 1.5, 1.0, 3.0))
    a = write_servegen(tmp_path / "full.csv", full)
    # from 1200 s (a window's start): the file from its third window; from 1500 s (inside that
    # window): the same, the rest of that window first (the next one starts 300 s in)
    for start, cut in ((1200.0, starts[:4]), (1500.0, (0.0, 300.0, 900.0, 1500.0))):
        rest = RateCurve(cut, full.rates_per_s[2:], full.cvs[2:])  # type: ignore[index]
        b = write_servegen(tmp_path / f"from-{start:g}.csv", rest)
        got = ServeGen(path=str(a), start_s=start, time_scale=0.5).times(
            np.random.default_rng(3), 1000.0
        )
        want = ServeGen(path=str(b), time_scale=0.5).times(np.random.default_rng(3), 1000.0)
        np.testing.assert_array_equal(got, want)
        assert len(got) > 100
    assert ServeGen(path=str(a), start_s=9000.0).invalid() == (
        "start_s",
        "at most 3000 (the file's last window starts there)",
    )
