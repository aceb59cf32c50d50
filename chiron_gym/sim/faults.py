"""When instances fail or are reclaimed, and what did: the cluster's fault schedule.

An instance of a pool with ``failures_per_gpu_hour`` fails after an exponential time from its
request (per GPU); one of a spot pool (``reclaims_per_hour``) gets a reclaim notice after an
exponential time, drains for ``reclaim_notice_s`` and is then taken; a scale-up may find the
provider out of GPUs (``stockout_probability`` per instance asked for): the instance is not
granted, or waits for GPUs (``stockout_wait_s``) and its faults are drawn from its grant.
Scripted failures (``ClusterConfig.failures_at``) fail a pool's oldest live instance. Times are
drawn from a random stream of their own, at the instance's request: a pool without faults draws
nothing. ``Cluster`` (``sim/cluster.py``) acts on them; no stretch of an instance runs past its
next fault (``horizon``), so both simulation modes meet a fault at the same iteration.
"""

from __future__ import annotations

import math

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.request import Pool
from chiron_gym.sim.specs import ClusterConfig, PoolSpec

FAIL, NOTICE = 0, 1  # what a drawn fault is: a failure, or a spot reclaim's notice


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Faults:
    """The fault schedule of one cluster and its counts (per pool: failures, reclaims)."""

    def __init__(self, config: ClusterConfig, rng: np.random.Generator | None) -> None:
        self.rng = rng
        self.active = config.has_failures
        self.failures = [0] * len(Pool)  # by pool
        self.reclaims = [0] * len(Pool)
        self.stockouts = [0] * len(Pool)  # instances asked for, not granted or made to wait
        self.log: list[str] = []  # one line per fault, in order
        self.reclaimed: set[int] = set()  # instances under notice or taken: they never sleep
        self.until: dict[int, float] = {}  # each instance's next fault
        self.scripted: dict[Pool, list[float]] = {p: [] for p in Pool}  # to come, in order
        for t, pool in sorted(config.failures_at):
            self.scripted[pool].append(t)

    def draw(self, instance_id: int, spec: PoolSpec, now: float) -> list[tuple[float, int]]:
        """The faults of an instance requested ``now``: ``(time, FAIL or NOTICE)``."""
        out: list[tuple[float, int]] = []
        if self.rng is None:
            return out
        rate = spec.failures_per_gpu_hour * spec.instance.gpus
        if rate > 0:
            out.append((now + float(self.rng.exponential(3600.0 / rate)), FAIL))
        if spec.reclaims_per_hour > 0:
            out.append((now + float(self.rng.exponential(3600.0 / spec.reclaims_per_hour)), NOTICE))
        if out:
            self.until[instance_id] = min(t for t, _ in out)
        return out

    def grants(self, spec: PoolSpec, asked: int, now: float) -> list[float]:
        """The waits for GPUs of the new instances of ``spec``'s pool the provider grants, of
        ``asked``: each is refused with ``stockout_probability`` (one draw per instance; none at
        probability 0), and a refused one either is not granted (``stockout_wait_s`` 0: left
        out) or waits an exponential time of mean ``stockout_wait_s`` (drawn after the refusals,
        in order); a granted one waits 0."""
        p = spec.stockout_probability
        if p <= 0 or self.rng is None:
            return [0.0] * asked
        refused = [float(self.rng.random()) < p for _ in range(asked)]
        n = sum(refused)
        if not n:
            return [0.0] * asked
        self.stockouts[spec.pool] += n
        mean = spec.stockout_wait_s
        if mean <= 0:
            self.log.append(f"{now:.3f} s: {n} of {asked} instances not granted")
            return [0.0] * (asked - n)
        waits = [float(self.rng.exponential(mean)) if r else 0.0 for r in refused]
        self.log.append(f"{now:.3f} s: {n} of {asked} instances wait for GPUs")
        return waits

    def horizon(self, instance_id: int, pool: Pool, horizon: float, now: float) -> float:
        """``horizon``, or the instance's next fault (drawn or scripted) if sooner."""
        h = min(horizon, self.until.get(instance_id, math.inf))
        scripted = self.scripted[pool]
        return min(h, max(scripted[0], now)) if scripted else h
