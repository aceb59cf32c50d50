"""The Backend protocol: a serving cluster an environment can advance, observe and scale."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from chiron_gym.sim import ClassReport, InstanceStats, Pool, PoolSpec, WindowReport, Workload


@dataclass(frozen=True, slots=True)
class PoolBounds:
    """A pool's bounds, the one record of them that the backends, the environment, Chiron's
    controllers and the agents share: whether the scenario has the pool, its instance range, its
    largest batch cap, GPUs and KV capacity per instance; ``clamp`` keeps an instance change
    within the range."""

    exists: bool
    min_instances: int
    max_instances: int
    max_batch_cap: int
    gpus_per_instance: int
    kv_capacity_tokens: int = 0
    block_size_tokens: int = 16

    @classmethod
    def of(cls, spec: PoolSpec | None, max_batch_cap: int | None = None) -> PoolBounds:
        """The bounds of a scenario's pool (``None``: a pool the scenario does not have);
        ``max_batch_cap`` where the engine's setting replaces the instance's."""
        if spec is None:
            return ABSENT
        inst = spec.instance
        return cls(
            exists=True,
            min_instances=spec.min_instances,
            max_instances=spec.max_instances,
            max_batch_cap=inst.max_batch_cap if max_batch_cap is None else max_batch_cap,
            gpus_per_instance=inst.gpus,
            kv_capacity_tokens=inst.kv_capacity_tokens,
            block_size_tokens=inst.block_size_tokens,
        )

    def clamp(self, live: int, delta: int) -> int:
        """``delta`` instances for a pool of ``live`` (starting or ready) ones, clipped so that
        the pool stays within ``[min_instances, max_instances]``."""
        return max(self.min_instances - live, min(delta, self.max_instances - live))

    def allows(self, live: int, delta: int) -> bool:
        """Whether ``live + delta`` instances are within the range."""
        return self.min_instances <= live + delta <= self.max_instances


ABSENT = PoolBounds(False, 0, 0, 1, 1, 0, 16)  # a pool the scenario does not have


@dataclass(frozen=True, slots=True)
class PoolState:
    """What the environment needs to know of a pool to act on it: its instances by state, its
    (mean) batch cap and its bounds."""

    starting: int
    ready: int
    draining: int
    batch_cap: int
    bounds: PoolBounds

    @property
    def exists(self) -> bool:
        return self.bounds.exists

    @property
    def live(self) -> int:
        """Instances that count against the pool's bounds (starting or ready)."""
        return self.starting + self.ready


ABSENT_STATE = PoolState(0, 0, 0, 0, ABSENT)


class Backend(Protocol):
    """A cluster of serving instances, on simulated or wall-clock time."""

    def reset(self, seed: int) -> None:
        """Start a fresh episode whose traffic is a pure function of ``seed``."""
        ...

    @property
    def now(self) -> float:
        """Seconds since the episode started."""
        ...

    def advance(self, until_s: float) -> WindowReport:
        """Run to ``until_s``; report the window since the previous call."""
        ...

    def run(self, until_s: float) -> None:
        """Run to ``until_s`` without closing the report window (for per-instance control)."""
        ...

    def instance_stats(self) -> list[InstanceStats]:
        """Every ready or draining instance's state and cumulative counters."""
        ...

    def set_instance_cap(self, instance_id: int, cap: int) -> None:
        """Set one instance's batch cap (Chiron's local loop runs per instance)."""
        ...

    def pool_state(self, pool: Pool) -> PoolState:
        """Instances, cap and bounds of a pool (``exists`` False if the scenario has none)."""
        ...

    def scale(self, pool: Pool, delta: int) -> int:
        """Start ``delta`` instances or drain ``-delta``; return the change made."""
        ...

    def set_batch_cap(self, pool: Pool, cap: int) -> None:
        """Set the run-time batch size (in-flight cap) of every instance of a pool."""
        ...

    def queue_lengths(self) -> tuple[int, int]:
        """Requests in the global queues: (interactive, batch)."""
        ...

    def batch_groups(self) -> list[tuple[float, int]]:
        """Queued batch request groups: ``(deadline_s, requests)``, earliest first."""
        ...

    def output_length_stats(self, klass: int) -> tuple[float, float, int]:
        """Mean and standard deviation of output tokens of finished requests, and their count."""
        ...

    def gpus_in_use(self) -> int:
        """GPUs held now (starting, ready and draining instances)."""
        ...

    def summary(self, latencies: bool = True) -> dict[str, ClassReport]:
        """Per-class outcomes of the episode so far (latency percentiles only if ``latencies``)."""
        ...

    def gpu_seconds(self) -> float:
        """GPU-seconds billed so far."""
        ...

    def priced_gpu_seconds(self) -> float:
        """GPU-seconds billed so far, each pool's at its ``PoolSpec.gpu_price``."""
        ...

    def capacity_events(self) -> dict[Pool, tuple[int, int, int, int]]:
        """Per pool, counted since the episode started: instances that failed, reclaim notices,
        instances a scale-up was refused (or made to wait); and instances under a notice now."""
        ...

    def drain_events(self) -> list[str]:
        """Faults and lifecycle events since the last call (e.g. a server that died)."""
        ...

    def arrived_since(self, since_s: float) -> tuple[Workload, npt.NDArray[np.bool_]]:
        """The requests arrived at or after ``since_s``, and which of them have finished."""
        ...

    def replace_future(self, future: Workload) -> None:
        """Replace the requests yet to arrive by ``future`` (to plan on a forecast in a copy of
        the episode); the simulator's only."""
        ...

    def unchanging(self) -> tuple[object, ...]:
        """Objects no episode changes from now on, which a snapshot may share rather than copy
        (``AutoscaleEnv.snapshot``)."""
        ...

    def close(self) -> None:
        """Release resources; idempotent."""
        ...
