"""The simulated backend: a ``Cluster`` built from a scenario, on simulated time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from chiron_gym.backends.base import ABSENT_STATE, PoolBounds, PoolState
from chiron_gym.backends.simulate import build_cluster
from chiron_gym.scenario import Scenario
from chiron_gym.sim import (
    ClassReport,
    Cluster,
    InstanceState,
    InstanceStats,
    Pool,
    WindowReport,
    Workload,
)


class SimBackend:
    """``Backend`` over the discrete-event simulator."""

    def __init__(self, scenario: Scenario, *, fast_forward: bool = True) -> None:
        self.scenario = scenario
        self.fast_forward = fast_forward
        self._cluster: Cluster | None = None
        self._caps: dict[Pool, int] = {}
        self._specs = {p.pool: p for p in scenario.cluster.pools}
        self._bounds = {pool: PoolBounds.of(spec) for pool, spec in self._specs.items()}

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            raise RuntimeError("call reset(seed) first")
        return self._cluster

    def reset(self, seed: int) -> None:
        self._cluster = build_cluster(self.scenario, seed, fast_forward=self.fast_forward)
        self._events_seen = 0
        self._caps = {p: spec.initial_batch_cap for p, spec in self._specs.items()}

    def arrived_since(self, since_s: float) -> tuple[Workload, npt.NDArray[np.bool_]]:
        return self.cluster.ledger.arrived_since(since_s)

    def replace_future(self, future: Workload) -> None:
        self.cluster.replace_future(future)

    def unchanging(self) -> tuple[object, ...]:
        """What a snapshot may share rather than copy: the scenario, the cluster's own
        unchanging objects, and what the episode has settled (stopped instances)."""
        return (self.scenario, *self.cluster.unchanging(), *self.cluster.settled())

    @property
    def now(self) -> float:
        return self.cluster.now

    def advance(self, until_s: float) -> WindowReport:
        return self.cluster.run_until(until_s)

    def run(self, until_s: float) -> None:
        self.cluster.run_to(until_s)

    def instance_stats(self) -> list[InstanceStats]:
        return self.cluster.instance_stats()

    def set_instance_cap(self, instance_id: int, cap: int) -> None:
        self.cluster.set_instance_cap(instance_id, cap)

    def pool_state(self, pool: Pool) -> PoolState:
        spec = self._specs.get(pool)
        if spec is None:
            return ABSENT_STATE
        counts = [0] * len(InstanceState)  # by state (an IntEnum): no per-call enum iteration
        caps: list[int] = []
        for inst in self.cluster.live_instances(pool):
            counts[inst.state] += 1
            if inst.state == InstanceState.READY:
                caps.append(inst.batch_cap)
        return PoolState(
            starting=counts[InstanceState.STARTING],
            ready=counts[InstanceState.READY],
            draining=counts[InstanceState.DRAINING],
            # per-instance caps (Chiron's local loop) may differ: their mean, rounded
            batch_cap=round(sum(caps) / len(caps)) if caps else self._caps[pool],
            bounds=self._bounds[pool],
        )

    def scale(self, pool: Pool, delta: int) -> int:
        # a new instance starts at the cap its pool's ready instances hold on average
        return self.cluster.scale(pool, delta, self.pool_state(pool).batch_cap)

    def set_batch_cap(self, pool: Pool, cap: int) -> None:
        if pool not in self._specs:
            return
        cap = max(1, min(cap, self._specs[pool].instance.max_batch_cap))
        self._caps[pool] = cap
        self.cluster.set_batch_cap(pool, cap)

    def queue_lengths(self) -> tuple[int, int]:
        q = self.cluster.queues
        return (len(q[0]), len(q[1]))

    def batch_groups(self) -> list[tuple[float, int]]:
        return self.cluster.queues[1].groups()

    def output_length_stats(self, klass: int) -> tuple[float, float, int]:
        return self.cluster.ledger.output_length_stats(klass)

    def gpus_in_use(self) -> int:
        total = 0
        for pool, spec in self._specs.items():
            total += len(self.cluster.live_instances(pool)) * spec.instance.gpus
        return total

    def summary(self, latencies: bool = True) -> dict[str, ClassReport]:
        return self.cluster.summary(latencies)

    def gpu_seconds(self) -> float:
        return self.cluster.gpu_seconds()

    def priced_gpu_seconds(self) -> float:
        return self.cluster.priced_gpu_seconds()

    def capacity_events(self) -> dict[Pool, tuple[int, int, int, int]]:
        return {pool: self.cluster.capacity_events(pool) for pool in self._specs}

    def drain_events(self) -> list[str]:
        """Instance failures since the last call (the env puts them in ``info``)."""
        log = self.cluster.faults.log
        out, self._events_seen = log[self._events_seen :], len(log)
        return out

    def close(self) -> None:
        self._cluster = None
