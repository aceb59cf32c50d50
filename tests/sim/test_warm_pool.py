"""Warm pools (vLLM sleep mode) and cold starts in phases."""

from __future__ import annotations

import numpy as np
import pytest

from chiron_gym.sim import (
    Cluster,
    ClusterConfig,
    ColdStart,
    InstanceState,
    Pool,
    PoolSpec,
    Workload,
)
from tests.conftest import small_spec


def _cluster(warm: int, wake_s: float = 2.0, sleep_cost: float = 0.1) -> Cluster:
    spec = small_spec(cold_start=ColdStart(kind="fixed", median_s=60.0))
    pool = PoolSpec(
        pool=Pool.INTERACTIVE,
        instance=spec,
        initial_instances=1,
        warm_instances=warm,
        wake_s=wake_s,
        sleep_cost=sleep_cost,
        gpu_price=2.0,
    )
    empty = Workload.from_columns(arrival_s=[], klass=[], prompt_tokens=[], output_tokens=[])
    return Cluster(ClusterConfig(pools=(pool,)), empty, np.random.default_rng(0))


def test_wake_takes_its_documented_time_then_cold_start() -> None:
    """With one instance asleep, a scale-up of two wakes it (ready after ``wake_s``) and cold
    starts the other (ready after the cold start)."""
    cluster = _cluster(warm=1)
    assert cluster.sleeping(Pool.INTERACTIVE) == 1
    cluster.run_until(10.0)
    cluster.scale(Pool.INTERACTIVE, 2)
    assert cluster.sleeping(Pool.INTERACTIVE) == 0
    woken, cold = cluster.instances[1:]
    assert woken.ready_s == pytest.approx(12.0) and cold.ready_s == pytest.approx(70.0)
    cluster.run_until(12.0)
    assert woken.state == InstanceState.READY and cold.state == InstanceState.STARTING
    assert cluster.wakes == 1


def test_sleeping_instances_are_billed_at_their_share() -> None:
    """Asleep 0-10 s at 0.1 of a GPU: 1 GPU-second beside the ready instance's 20 by t=20;
    priced at the pool's 2.0; a stopped ready instance goes back to sleep."""
    cluster = _cluster(warm=1)
    cluster.run_until(10.0)
    cluster.scale(Pool.INTERACTIVE, 1)
    cluster.run_until(20.0)
    # instance 0: 20 s; the woken one: 10 s (from the scale-up, its wake included); asleep: 1
    assert cluster.gpu_seconds() == pytest.approx(20.0 + 10.0 + 1.0)
    assert cluster.priced_gpu_seconds() == pytest.approx(2.0 * 31.0)
    cluster.scale(Pool.INTERACTIVE, -1)  # an idle ready instance stops at once: back to sleep
    assert cluster.sleeping(Pool.INTERACTIVE) == 1
    cluster.run_until(30.0)
    assert cluster.gpu_seconds() == pytest.approx(30.0 + 10.0 + 1.0 + 1.0)


def test_no_warm_pool_changes_nothing() -> None:
    """``warm_instances = 0``: every scale-up is a cold start, nothing sleeps."""
    cluster = _cluster(warm=0)
    cluster.scale(Pool.INTERACTIVE, 1)
    assert cluster.instances[1].ready_s == pytest.approx(60.0)
    cluster.scale(Pool.INTERACTIVE, -2)
    assert cluster.sleeping(Pool.INTERACTIVE) == 0 and not cluster.sleep_spans


def test_a_cancelled_cold_start_does_not_fall_asleep() -> None:
    """Only an instance that had loaded goes to sleep: a start cancelled mid-way does not."""
    cluster = _cluster(warm=1)
    cluster.scale(Pool.INTERACTIVE, 2)  # wakes the sleeper, cold-starts another
    cluster.scale(Pool.INTERACTIVE, -1)  # cancels the newest start: the cold one
    assert cluster.sleeping(Pool.INTERACTIVE) == 0


def test_cold_start_phases_sum_to_the_median() -> None:
    """Phases name what a cold start is made of; the median is their sum, checked."""
    cs = ColdStart.of_phases((("container", 38.0), ("weights", 5.0), ("compile", 16.0)))
    assert cs.median_s == pytest.approx(59.0)
    with pytest.raises(ValueError, match="sum of its phases"):
        ColdStart(median_s=60.0, phases=(("weights", 5.0),))
    with pytest.raises(ValueError, match="'weights' must be >= 0"):
        ColdStart.of_phases((("weights", -1.0),))
