"""Arrival processes: times in seconds within ``[0, horizon_s)``, sorted."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# What a sane scenario never reaches, checked when it loads (a typo such as count = 1e9 would
# otherwise exhaust memory while drawing arrivals): requests per source (also what replicating a
# trace may grow it to), pieces of a rate curve.
MAX_REQUESTS = 10_000_000
MAX_PIECES = 1_000_000


def poisson_arrivals(
    rng: np.random.Generator, rate_per_s: float, horizon_s: float
) -> npt.NDArray[np.float64]:
    """A homogeneous Poisson process of ``rate_per_s`` over ``[0, horizon_s)``."""
    if rate_per_s < 0 or horizon_s < 0:
        raise ValueError("rate_per_s and horizon_s must be >= 0")
    if rate_per_s == 0 or horizon_s == 0:
        return np.empty(0)
    return _renewal(
        lambda n: rng.exponential(1.0 / rate_per_s, size=n), horizon_s, rate_per_s * horizon_s
    )


def _renewal(
    gaps: Callable[[int], npt.NDArray[np.float64]], end: float, expected: float
) -> npt.NDArray[np.float64]:
    """Event times on ``[0, end)`` of the gaps ``gaps(n)`` draws, ``n`` at a time from about
    ``expected`` events: exact, and the stream depends only on ``expected``."""
    times: list[npt.NDArray[np.float64]] = []
    t = 0.0
    chunk = max(16, int(expected * 1.1) + 16)
    while t < end:
        ts = t + np.cumsum(gaps(chunk))
        times.append(ts)
        t = float(ts[-1])
    out = np.concatenate(times)
    return out[out < end]


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


def _unit_renewal(rng: np.random.Generator, cv: float, total: float) -> npt.NDArray[np.float64]:
    """Event times of a unit-rate renewal process on ``[0, total)``: Gamma gaps of CV ``cv``.

    CV 1 is Poisson; CV above 1 is bursty (clustered arrivals); CV 0 is a regular clock.
    """
    if cv < 0:
        raise ValueError("cv must be >= 0")
    if total <= 0:
        return np.empty(0)
    if cv == 0:
        return _renewal(np.ones, total, total)
    shape = 1.0 / (cv * cv)
    return _renewal(lambda n: rng.gamma(shape, 1.0 / shape, size=n), total, total)


def _window(rng: np.random.Generator, cv: float, expected: float) -> npt.NDArray[np.float64]:
    """Arrivals of one measured window, as fractions of it in ``[0, 1)``: ``expected`` of them
    (its integer part, and one more with the probability of its fraction), at the cumulative sums
    of ``n + 1`` Gamma gaps of CV ``cv`` divided by their total.

    The count is the window's, as ServeGen builds a window (its rate times its length); only the
    placement is random. A renewal process restarted in every window would not hold it: its
    first gaps cluster, so a window of CV 76 and 150 expected arrivals drew 1,700 on average.
    CV 1 places them as a Poisson process given its count does (uniform order statistics); as
    the CV grows they gather into fewer bursts, at the limit one instant drawn uniformly.
    """
    if cv < 0:
        raise ValueError("cv must be >= 0")
    n = int(expected)
    n += int(rng.random() < expected - n)
    if n == 0:
        return np.empty(0)
    gaps = np.ones(n + 1) if cv == 0 else rng.gamma(1.0 / (cv * cv), 1.0, size=n + 1)
    cum = np.cumsum(gaps)
    if not cum[-1] > 0:  # every gap underflowed to 0: one burst
        return np.full(n, rng.random())
    return np.asarray(cum[:-1] / cum[-1], dtype=np.float64)


def gamma_arrivals(
    rng: np.random.Generator, rate_per_s: float, cv: float, horizon_s: float
) -> npt.NDArray[np.float64]:
    """A Gamma renewal process: mean rate ``rate_per_s``, inter-arrival CV ``cv``."""
    if rate_per_s < 0 or horizon_s < 0:
        raise ValueError("rate_per_s and horizon_s must be >= 0")
    if rate_per_s == 0:
        return np.empty(0)
    return _unit_renewal(rng, cv, rate_per_s * horizon_s) / rate_per_s


@dataclass(frozen=True, slots=True)
class RateCurve:
    """A piecewise-constant arrival rate: ``rates_per_s[i]`` on ``[starts_s[i], starts_s[i+1])``.

    The last rate holds until the horizon. ``cvs`` (optional, one per piece) gives each piece's
    inter-arrival CV, as ServeGen's rate files do.
    """

    starts_s: tuple[float, ...]
    rates_per_s: tuple[float, ...]
    cvs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.starts_s or len(self.starts_s) != len(self.rates_per_s):
            raise ValueError("RateCurve needs one rate per start, and at least one")
        if self.starts_s[0] != 0.0:
            raise ValueError("RateCurve must start at 0")
        if any(b <= a for a, b in zip(self.starts_s, self.starts_s[1:], strict=False)):
            raise ValueError("RateCurve starts must increase")
        if any(r < 0 or not math.isfinite(r) for r in self.rates_per_s):
            raise ValueError("RateCurve rates must be finite and >= 0")
        if self.cvs is not None and len(self.cvs) != len(self.starts_s):
            raise ValueError("RateCurve needs one CV per piece")

    def mean_rate(self, horizon_s: float) -> float:
        """Average rate over ``[0, horizon_s)``."""
        return self.cumulative(horizon_s) / horizon_s if horizon_s > 0 else 0.0

    def cumulative(self, t: float) -> float:
        """Expected arrivals on ``[0, t)``."""
        total = 0.0
        edges = (*self.starts_s, math.inf)
        for i, r in enumerate(self.rates_per_s):
            lo, hi = edges[i], min(edges[i + 1], t)
            if hi <= lo:
                break
            total += r * (hi - lo)
        return total


def rate_curve_arrivals(
    rng: np.random.Generator, curve: RateCurve, horizon_s: float, cv: float = 1.0
) -> npt.NDArray[np.float64]:
    """A time-varying renewal process: ``curve`` gives the rate, ``cv`` the burstiness.

    Time rescaling: a unit-rate renewal process of CV ``cv`` is mapped through the inverse of the
    cumulative rate, so the rate follows the curve exactly in expectation and gaps keep the CV
    locally. With per-piece CVs (``curve.cvs``, a ServeGen rate file's measured windows) each
    piece holds its expected count (``_window``), spread within it by gaps of its CV.
    """
    if horizon_s <= 0:
        return np.empty(0)
    starts = np.asarray(curve.starts_s, dtype=np.float64)
    ends = np.append(starts[1:], np.inf)
    keep = starts < horizon_s
    starts, ends = starts[keep], np.minimum(ends[keep], horizon_s)
    rates = np.asarray(curve.rates_per_s, dtype=np.float64)[keep]
    if curve.cvs is not None:
        parts = []
        for lo, hi, r, c in zip(starts, ends, rates, np.asarray(curve.cvs)[keep], strict=True):
            if r > 0:
                at = lo + _window(rng, float(c), float(r * (hi - lo))) * (hi - lo)
                parts.append(np.minimum(at, np.nextafter(hi, lo)))  # rounding never reaches hi
        return np.concatenate(parts) if parts else np.empty(0)
    cum = np.concatenate([[0.0], np.cumsum(rates * (ends - starts))])
    units = _unit_renewal(rng, cv, float(cum[-1]))
    idx = np.searchsorted(cum, units, side="right") - 1
    idx = np.clip(idx, 0, len(rates) - 1)
    return np.asarray(starts[idx] + (units - cum[idx]) / rates[idx], dtype=np.float64)


def diurnal_curve(
    mean_rate_per_s: float,
    amplitude: float,
    period_s: float,
    horizon_s: float,
    *,
    phase_s: float = 0.0,
    step_s: float | None = None,
) -> RateCurve:
    """``mean * (1 + amplitude * sin(2 pi (t - phase) / period))``, held constant per step.

    The step defaults to period / 96 (15 minutes of a day).
    """
    if not 0 <= amplitude <= 1:
        raise ValueError("amplitude must be in [0, 1]")
    step = step_s or period_s / 96.0
    starts = np.arange(0.0, horizon_s, step)
    mid = starts + step / 2
    rates = mean_rate_per_s * (1 + amplitude * np.sin(2 * np.pi * (mid - phase_s) / period_s))
    return RateCurve(tuple(float(s) for s in starts), tuple(float(r) for r in rates))


def flash_crowd_curve(
    base_rate_per_s: float, peak_rate_per_s: float, start_s: float, hold_s: float
) -> RateCurve:
    """Base rate, a step up to the peak at ``start_s`` held ``hold_s``, then back to base."""
    if start_s <= 0 or hold_s <= 0:
        raise ValueError("start_s and hold_s must be > 0")
    return RateCurve(
        (0.0, start_s, start_s + hold_s), (base_rate_per_s, peak_rate_per_s, base_rate_per_s)
    )


def onoff_arrivals(
    rng: np.random.Generator,
    *,
    rate_on_per_s: float,
    mean_on_s: float,
    mean_off_s: float,
    horizon_s: float,
    rate_off_per_s: float = 0.0,
) -> npt.NDArray[np.float64]:
    """A two-state Markov-modulated Poisson process (exponential on and off sojourns)."""
    if mean_on_s <= 0 or mean_off_s <= 0:
        raise ValueError("mean_on_s and mean_off_s must be > 0")
    starts: list[float] = []
    rates: list[float] = []
    t, on = 0.0, True
    while t < horizon_s:
        starts.append(t)
        rates.append(rate_on_per_s if on else rate_off_per_s)
        t += float(rng.exponential(mean_on_s if on else mean_off_s))
        on = not on
    return rate_curve_arrivals(rng, RateCurve(tuple(starts), tuple(rates)), horizon_s)
