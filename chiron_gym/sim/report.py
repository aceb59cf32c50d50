"""What ``Cluster.run_until`` and ``Cluster.summary`` return: per-class and per-pool figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from mypy_extensions import mypyc_attr

PERCENTILES = (50, 95, 99)


def percentiles(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    """p50, p95 and p99 (NaN when there are no values): ``np.percentile``'s default (linear)
    method, bit for bit, without its per-call overhead (a window's lists are short and this runs
    four times a step); arrays and lists with a NaN go to numpy itself."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    if isinstance(values, np.ndarray):
        if np.isnan(values).any():
            return _numpy_percentiles(values)
        xs: list[float] = np.sort(values).tolist()
    else:
        xs = sorted(values)
        for x in xs:
            if x != x:  # NaN
                return _numpy_percentiles(values)
    return (_linear(xs, n, 0.5), _linear(xs, n, 0.95), _linear(xs, n, 0.99))


def _linear(xs: list[float], n: int, q: float) -> float:
    """numpy's linear quantile ``q`` of sorted ``xs``: index ``(n - 1) * q``, and between two
    order statistics the lerp numpy uses (``a + (b - a) * t``, or ``b - (b - a) * (1 - t)`` from
    ``t = 0.5`` on)."""
    v = (n - 1) * q
    if v >= n - 1:
        return xs[n - 1]
    lo = math.floor(v)
    a = xs[lo]
    b = xs[lo + 1]
    t = v - lo
    d = b - a
    if t >= 0.5:
        return b - d * (1 - t)
    return a + d * t


def _numpy_percentiles(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    p = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    return (float(p[0]), float(p[1]), float(p[2]))


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class InstanceStats:
    """One instance's state and cumulative counters (a per-instance controller differences them).

    ``pool`` is the pool's index (``Pool``); ``decode_token_time_s / decode_tokens`` over a
    period is the mean time between two tokens of a request decoding there (its ITL), as the
    sum and count of vLLM's inter-token latency histogram give it.
    """

    instance_id: int
    pool: int
    ready: bool  # False: draining
    batch_cap: int
    running: int
    waiting: int  # held but not running (swapped included)
    interactive_held: int  # interactive requests running or waiting
    tokens_generated: int
    decode_tokens: int
    decode_token_time_s: float
    first_tokens: int = 0  # first tokens sent, and their time from routing here, summed
    ttft_sum_s: float = 0.0


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
@dataclass(slots=True)
class ClassReport:
    """Outcomes of one request class.

    In a window report the outcome counts are those decided within the window and ``pending`` is
    the count held at its end; in the episode summary they cover every arrived request, so that
    ``met + late + rejected + pending == arrived``. ``attainment`` is ``met`` over the requests
    whose fate is known: finished, rejected, or pending past their deadline (``overdue``);
    NaN when there are none. Latencies are over requests finished in the window (TTFT: time to
    first token; ITL: a request's mean inter-token latency).
    """

    arrived: int = 0
    met: int = 0
    late: int = 0
    rejected: int = 0
    pending: int = 0
    overdue: int = 0
    queued: int = 0
    met_output_tokens: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    ttft_s: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    itl_s: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    # episode summaries only (finished requests past a closed loop's warm-up): mean TTFT; mean
    # time per output token after the first (per request, averaged: vLLM bench's TPOT); output
    # tokens per second from the first measured arrival to the last finish
    ttft_mean_s: float = math.nan
    tpot_mean_s: float = math.nan
    output_tokens_per_s: float = math.nan

    @property
    def attainment(self) -> float:
        """SLO attainment among decided requests (NaN when none is decided)."""
        decided = self.met + self.late + self.rejected + self.overdue
        return self.met / decided if decided else math.nan


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
@dataclass(slots=True)
class PoolReport:
    """State of one pool at the end of a window."""

    starting: int = 0
    ready: int = 0
    draining: int = 0
    batch_cap: float = 0.0  # mean over ready instances
    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0  # mean over ready instances
    tokens_generated: int = 0  # in the window
    preemptions: int = 0  # in the window
    swap_outs: int = 0  # in the window
    prefix_hit_rate: float = 0.0  # prompt tokens found in the prefix cache, share (window)
    # Disaggregated pools: requests being sent (a prefill pool: prefilled, KV not yet read; a
    # decode pool: handed over, being read in), and a prefill pool's prompt tokens to compute.
    transfers: int = 0
    prompt_tokens_queued: int = 0


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
@dataclass(slots=True)
class WindowReport:
    """One window ``[t_start_s, t_end_s]`` of simulated time."""

    t_start_s: float
    t_end_s: float
    classes: dict[str, ClassReport]
    pools: dict[str, PoolReport]
    gpu_seconds: float

    @property
    def duration_s(self) -> float:
        """Length of the window."""
        return self.t_end_s - self.t_start_s
