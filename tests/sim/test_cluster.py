"""Scaling and lifecycle: cold starts delay capacity, draining finishes work, GPU-seconds billed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chiron_gym.sim import ColdStart, InstanceState, Outcome, Pool, Workload
from tests.conftest import make_cluster, small_spec


def one_request(at: float, output: int = 10) -> Workload:
    return Workload.from_columns(
        arrival_s=[at], klass=[0], prompt_tokens=[20], output_tokens=[output]
    )


def test_cold_start_delays_capacity() -> None:
    """A request arriving while the only instance starts waits for the end of its cold start."""
    spec = small_spec(cold_start=ColdStart(kind="fixed", median_s=30.0))
    cluster = make_cluster(one_request(1.0), {Pool.INTERACTIVE: (0, 4)}, spec)
    assert cluster.scale(Pool.INTERACTIVE, 1) == 1
    cluster.run_until(29.0)
    assert cluster.live_instances(Pool.INTERACTIVE)[0].state == InstanceState.STARTING
    assert len(cluster.queues[0]) == 1
    cluster.run_until(60.0)
    assert cluster.admitted_s[0] == pytest.approx(30.0)
    assert cluster.outcome[0] == Outcome.LATE  # TTFT SLO of 1 s missed by the cold start


def test_draining_finishes_in_flight_work_then_stops() -> None:
    """A drained instance takes nothing new, finishes its requests, then stops (billing ends)."""
    workload = Workload.from_columns(
        arrival_s=[0.0, 0.0, 0.0, 5.0],
        klass=[0, 0, 0, 0],
        prompt_tokens=[20, 20, 20, 20],
        output_tokens=[300, 400, 500, 10],
    )
    cluster = make_cluster(workload, {Pool.INTERACTIVE: (1, 8)})
    cluster.run_until(1.0)
    inst = cluster.live_instances(Pool.INTERACTIVE)[0]
    assert cluster.scale(Pool.INTERACTIVE, -1) == -1
    assert inst.state == InstanceState.DRAINING
    cluster.run_until(100.0)
    assert inst.state == InstanceState.STOPPED
    assert list(cluster.outcome[:3] != Outcome.PENDING) == [True, True, True]
    assert inst.stopped_s == pytest.approx(np.nanmax(cluster.finish_s[:3]))
    # The late arrival was not routed to the draining instance: it waits in the global queue.
    assert cluster.outcome[3] == Outcome.PENDING and len(cluster.queues[0]) == 1
    assert cluster.gpu_seconds() == pytest.approx(inst.stopped_s)


def test_gpu_seconds_count_cold_start_and_gpus() -> None:
    """Billing runs from the scale-up request to the stop, times the GPUs per instance."""
    spec = small_spec(gpus=4, cold_start=ColdStart(kind="fixed", median_s=30.0))
    cluster = make_cluster(one_request(500.0), {Pool.BATCH: (0, 4)}, spec)
    cluster.run_until(10.0)
    cluster.scale(Pool.BATCH, 1)
    cluster.run_until(100.0)
    assert cluster.scale(Pool.BATCH, -1) == -1  # idle: stops at once
    cluster.run_until(200.0)
    assert cluster.gpu_seconds() == pytest.approx(90.0 * 4)
    assert cluster.gpu_seconds(0.0, 50.0) == pytest.approx(40.0 * 4)


def test_scale_down_cancels_starting_instances_first() -> None:
    """Cancelling a starting instance is free capacity-wise and is preferred over draining."""
    spec = small_spec(cold_start=ColdStart(kind="fixed", median_s=60.0))
    cluster = make_cluster(one_request(1000.0), {Pool.INTERACTIVE: (1, 4)}, spec)
    cluster.scale(Pool.INTERACTIVE, 2)
    cluster.run_until(10.0)
    assert cluster.scale(Pool.INTERACTIVE, -2) == -2
    states = [i.state for i in cluster.instances]
    assert states == [InstanceState.READY, InstanceState.STOPPED, InstanceState.STOPPED]
    cluster.run_until(100.0)  # the cancelled instances never become ready
    assert [i.state for i in cluster.instances][1:] == [InstanceState.STOPPED] * 2
    assert math.isclose(cluster.gpu_seconds(), 100.0 + 10.0 + 10.0)


def test_batch_queue_is_served_earliest_deadline_first() -> None:
    """Request groups: a later-arriving batch request with an earlier deadline is served first."""
    workload = Workload.from_columns(
        arrival_s=[0.0, 0.0, 0.1, 0.2],
        klass=[1, 1, 1, 1],
        prompt_tokens=[10] * 4,
        output_tokens=[50] * 4,
        deadline_s=[5000.0, 9000.0, 9000.0, 100.0],
    )
    cluster = make_cluster(workload, {Pool.BATCH: (1, 1)})
    cluster.run_until(100.0)
    order = list(np.argsort(cluster.admitted_s, kind="stable"))
    assert order == [0, 3, 1, 2]
