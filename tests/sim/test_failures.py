"""Instances that fail (issue 42): the requests they held start again elsewhere or are refused,
their billing ends at the failure, every request stays in exactly one state, KV blocks stay
conserved, and fast-forward still equals the per-iteration reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym.sim import (
    SLO,
    Cluster,
    ClusterConfig,
    InstanceSpec,
    InstanceState,
    LinearPerfModel,
    Outcome,
    Pool,
    PoolSpec,
    Workload,
)
from chiron_gym.sim.request import RejectReason
from tests.sim.strategies import random_case, run_case
from tests.sim.test_fast_forward import assert_same_timestamps
from tests.sim.test_invariants import check_accounting, invariant_checker

SPEC = InstanceSpec(
    perf_model=LinearPerfModel(
        overhead_s=0.01, per_token_s=0.0, prefill_pair_s=0.0, decode_context_s=0.0
    ),
    kv_capacity_blocks=1000,
    block_size_tokens=16,
    gpus=2,
)


def _cluster(on_failure: str, fail_at: float) -> Cluster:
    """Two interactive instances (2 GPUs each), iterations of 10 ms; one request of 100 output
    tokens at t = 0 (on instance 0: ties go to the earliest started); instance 0 fails at
    ``fail_at``."""
    config = ClusterConfig(
        pools=(PoolSpec(pool=Pool.INTERACTIVE, instance=SPEC, initial_instances=2),),
        interactive_slo=SLO(ttft_s=10.0, itl_s=1.0),
        failures_at=((fail_at, Pool.INTERACTIVE),),
        on_failure=on_failure,
    )
    w = Workload.from_columns(arrival_s=[0.0], klass=[0], prompt_tokens=[16], output_tokens=[100])
    return Cluster(config, w, np.random.default_rng(0))


def test_a_failed_instances_request_starts_again_on_another_and_billing_stops() -> None:
    # 100 tokens take 100 iterations of 10 ms; at 0.505 s the first instance has made 50
    cluster = _cluster("requeue", 0.505)
    cluster.run_until(5.0)
    first, second = cluster.instances
    assert first.state == InstanceState.STOPPED and first.stopped_s == 0.505
    assert cluster.faults.failures == [1, 0, 0, 0, 0]
    assert cluster.outcome[0] == Outcome.MET
    # started again from its prompt on the second instance: its first token is that one's
    assert cluster.first_token_s[0] == pytest.approx(0.505 + 0.01)
    assert cluster.finish_s[0] == pytest.approx(0.505 + 100 * 0.01)
    # GPU-seconds: 2 GPUs x 0.505 s for the failed one, 2 x 5 s for the other
    assert cluster.gpu_seconds() == pytest.approx(2 * 0.505 + 2 * 5.0)
    assert cluster.live_instances(Pool.INTERACTIVE) == [second]


def test_a_failed_instances_request_is_refused_when_the_scenario_says_so() -> None:
    cluster = _cluster("reject", 0.505)
    cluster.run_until(5.0)
    assert cluster.outcome[0] == Outcome.REJECTED
    assert cluster.reject_reason[0] == RejectReason.INSTANCE_FAILED
    assert cluster.summary()["interactive"].rejected_by_reason == {"instance_failed": 1}


def test_failure_times_come_from_their_own_stream_and_scale_with_gpus() -> None:
    """A rate of 0 draws nothing (other streams untouched); a rate per GPU-hour fails an
    instance of g GPUs at g times that rate: mean time to failure over many instances."""
    pool = PoolSpec(pool=Pool.INTERACTIVE, instance=SPEC, initial_instances=400)
    w = Workload.from_columns(arrival_s=[0.0], klass=[0], prompt_tokens=[16], output_tokens=[1])
    rng = np.random.default_rng(7)
    Cluster(ClusterConfig(pools=(pool,)), w, np.random.default_rng(0), failure_rng=rng)
    assert rng.random() == np.random.default_rng(7).random()  # nothing drawn at rate 0
    rate = replace(pool, failures_per_gpu_hour=1.0)  # 2 GPUs: one failure per 1,800 s
    cluster = Cluster(
        ClusterConfig(pools=(rate,)), w, np.random.default_rng(0),
        failure_rng=np.random.default_rng(7),
    )  # fmt: skip
    cluster.run_until(100_000.0)
    stopped = [i.stopped_s for i in cluster.instances]
    assert cluster.faults.failures[Pool.INTERACTIVE] == 400
    assert np.mean(stopped) == pytest.approx(1800.0, rel=0.15)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_requests_and_kv_blocks_are_conserved_under_random_failures(seed: int) -> None:
    case = random_case(seed, failures=True)
    errors: list[str] = []
    cluster = run_case(case, fast_forward=True, on_iteration=invariant_checker(errors))
    assert not errors, errors[:5]
    check_accounting(cluster)
    for inst in cluster.instances:
        if inst.state == InstanceState.STOPPED:
            assert inst.load == 0 and inst.used_blocks == 0
    # billing: each instance from its grant (its request, unless it waited for GPUs) to its
    # stop (or now), times its GPUs; one stopped or still waiting before its grant costs
    # nothing; priced, each at its pool's price
    now = cluster.now
    price = {p.pool: p.gpu_price for p in case.config.pools}
    held = [
        (max(0.0, (min(i.stopped_s, now) if not np.isnan(i.stopped_s) else now) - i.started_s))
        * i.spec.gpus
        for i in cluster.instances
    ]
    assert cluster.gpu_seconds() == pytest.approx(sum(held), rel=1e-9, abs=1e-9)
    priced = sum(h * price[i.pool] for h, i in zip(held, cluster.instances, strict=True))
    assert cluster.priced_gpu_seconds() == pytest.approx(priced, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fast_forward_matches_reference_under_failures(seed: int) -> None:
    case = random_case(seed, failures=True)
    ff = run_case(case, fast_forward=True)
    ref = run_case(case, fast_forward=False)
    assert_same_timestamps(ff, ref)
    assert ff.faults.failures == ref.faults.failures
    # a drained instance stops at an iteration end: equal to the timestamps' 1e-9
    np.testing.assert_allclose(
        [i.stopped_s for i in ff.instances], [i.stopped_s for i in ref.instances], rtol=1e-9
    )


def test_a_spot_instance_drains_under_notice_then_is_taken() -> None:
    """Notice at a drawn time: the instance takes nothing new, keeps serving what it holds for
    ``reclaim_notice_s``, and is then taken (what it still holds starts again elsewhere); one
    that empties under notice stops then, and a reclaimed instance never goes to sleep."""
    spot = PoolSpec(
        pool=Pool.INTERACTIVE, instance=SPEC, initial_instances=1, reclaims_per_hour=3600.0,
        reclaim_notice_s=0.3, warm_instances=1,
    )  # fmt: skip
    mixed = PoolSpec(pool=Pool.MIXED, instance=SPEC, initial_instances=1)
    w = Workload.from_columns(
        arrival_s=[0.0, 0.0], klass=[0, 0], prompt_tokens=[16, 16], output_tokens=[10, 200]
    )
    config = ClusterConfig(pools=(spot, mixed), interactive_slo=SLO(ttft_s=10.0, itl_s=1.0))
    rng = np.random.default_rng(1)
    notice = float(np.random.default_rng(1).exponential(1.0))  # mean 1 s: 3,600 per hour
    cluster = Cluster(config, w, np.random.default_rng(0), failure_rng=rng)
    cluster.run_until(notice + 0.15)
    inst = cluster.instances[0]
    assert inst.pool == Pool.INTERACTIVE and inst.state == InstanceState.DRAINING
    cluster.run_until(60.0)
    assert inst.state == InstanceState.STOPPED
    assert inst.stopped_s == pytest.approx(notice + 0.3)  # taken at the end of the notice
    assert cluster.faults.reclaims[Pool.INTERACTIVE] == 1
    assert cluster.faults.failures == [0, 0, 0, 0, 0]
    assert cluster.sleeping(Pool.INTERACTIVE) == 1  # the warm pool's own, not the reclaimed one
    assert list(cluster.outcome[:2]) == [Outcome.MET, Outcome.MET]
    log = cluster.faults.log
    assert "reclaim notice" in log[0] and "taken" in log[1]


def test_a_stockout_grants_fewer_instances_and_says_so() -> None:
    """Each instance asked for is refused with ``stockout_probability``: ``scale`` returns
    what was granted, the refusals are counted and logged; at probability 0 nothing is drawn."""
    w = Workload.from_columns(arrival_s=[0.0], klass=[0], prompt_tokens=[16], output_tokens=[1])

    def cluster(p: float, rng: np.random.Generator) -> Cluster:
        pool = PoolSpec(pool=Pool.INTERACTIVE, instance=SPEC, stockout_probability=p)
        return Cluster(ClusterConfig(pools=(pool,)), w, np.random.default_rng(0), failure_rng=rng)

    none = cluster(1.0, np.random.default_rng(3))
    assert none.scale(Pool.INTERACTIVE, 3) == 0 and len(none.live_instances(Pool.INTERACTIVE)) == 1
    assert none.faults.stockouts[Pool.INTERACTIVE] == 3
    assert none.faults.log == ["0.000 s: 3 of 3 instances not granted"]
    half = cluster(0.5, np.random.default_rng(3))
    draws = np.random.default_rng(3).random(200)
    assert half.scale(Pool.INTERACTIVE, 200) == int((draws >= 0.5).sum())
    rng = np.random.default_rng(3)
    assert cluster(0.0, rng).scale(Pool.INTERACTIVE, 5) == 5
    assert rng.random() == np.random.default_rng(3).random()  # nothing drawn


def test_a_warm_pool_wakes_its_sleepers_without_asking_the_provider() -> None:
    """Sleeping instances hold their GPUs: a scale-up wakes them first and asks the provider
    only for the rest, so a stockout refuses (and counts) only those. It once drew a refusal for
    every instance asked for and dropped refused ones that a sleeper could have served."""
    w = Workload.from_columns(arrival_s=[0.0], klass=[0], prompt_tokens=[16], output_tokens=[1])
    pool = PoolSpec(
        pool=Pool.INTERACTIVE, instance=SPEC, warm_instances=2, wake_s=2.0,
        stockout_probability=1.0,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    cluster = Cluster(ClusterConfig(pools=(pool,)), w, np.random.default_rng(0), failure_rng=rng)
    assert cluster.sleeping(Pool.INTERACTIVE) == 2
    assert cluster.scale(Pool.INTERACTIVE, 3) == 2  # two woken, one refused
    assert cluster.faults.stockouts[Pool.INTERACTIVE] == 1
    assert cluster.faults.log == ["0.000 s: 1 of 1 instances not granted"]
    assert cluster.sleeping(Pool.INTERACTIVE) == 0 and cluster.wakes == 2
    woken = [
        i for i in cluster.live_instances(Pool.INTERACTIVE) if i.state == InstanceState.STARTING
    ]
    assert len(woken) == 2
    cluster.run_until(2.5)
    assert all(i.state == InstanceState.READY for i in woken)  # wake_s, not a cold start
    assert cluster.scale(Pool.INTERACTIVE, 1) == 0  # no sleeper left: the provider refuses
    assert cluster.faults.stockouts[Pool.INTERACTIVE] == 2


def test_a_stockout_that_waits_starts_late_and_bills_from_its_grant() -> None:
    """With ``stockout_wait_s``, a refused instance waits an exponential time for GPUs (drawn after
    the refusals, in order; the new instances take them shortest first), unbilled and
    counted as starting, then runs its cold start; cancelled while it waits, it costs
    nothing."""
    w = Workload.from_columns(arrival_s=[0.0], klass=[0], prompt_tokens=[16], output_tokens=[1])
    pool = PoolSpec(
        pool=Pool.INTERACTIVE, instance=SPEC, stockout_probability=0.5, stockout_wait_s=30.0
    )
    cluster = Cluster(
        ClusterConfig(pools=(pool,)),
        w,
        np.random.default_rng(0),
        failure_rng=np.random.default_rng(8),
    )
    assert cluster.scale(Pool.INTERACTIVE, 4) == 4
    ref = np.random.default_rng(8)
    refused = ref.random(4) < 0.5
    waits = [float(ref.exponential(30.0)) if r else 0.0 for r in refused]
    assert refused.any() and not refused.all()  # this seed: some wait, some do not
    new = cluster.instances[1:]
    assert [i.started_s for i in new] == sorted(waits)  # granted ones first
    cold = SPEC.cold_start.median_s
    for inst in new:
        assert inst.state == InstanceState.STARTING
        assert inst.ready_s - inst.started_s == pytest.approx(cold, rel=0.5)  # its cold start
    assert cluster.faults.stockouts[Pool.INTERACTIVE] == int(refused.sum())
    assert cluster.faults.log == [f"0.000 s: {int(refused.sum())} of 4 instances wait for GPUs"]
    # cancel the four at 1 s: each costs from its grant to then (one still waiting: nothing)
    cluster.run_until(1.0)
    assert cluster.scale(Pool.INTERACTIVE, -4) == -4
    cluster.run_until(10.0)
    held = sum(max(0.0, 1.0 - w) for w in waits)
    assert any(w > 1.0 for w in waits)  # this seed: one waits past the cancel
    assert cluster.gpu_seconds() == pytest.approx(SPEC.gpus * (10.0 + held), rel=1e-12)


def test_an_instance_waiting_for_gpus_serves_nothing_and_fails_only_once_granted() -> None:
    """With no cold start, a waiting instance is still starting until its grant (it serves
    nothing, costs nothing), its faults are drawn from the grant, and a scale-down cancels the
    waiting ones before those already granted."""
    from chiron_gym.sim import ColdStart

    quick = replace(SPEC, cold_start=ColdStart(median_s=0.0))
    pool = PoolSpec(
        pool=Pool.INTERACTIVE, instance=quick, initial_instances=0, min_instances=0,
        stockout_probability=1.0, stockout_wait_s=1000.0, reclaims_per_hour=3600.0,
    )  # fmt: skip
    w = Workload.from_columns(
        arrival_s=[0.0, 1.0], klass=[0, 0], prompt_tokens=[16, 16], output_tokens=[5, 5]
    )
    cluster = Cluster(
        ClusterConfig(pools=(pool,)), w, np.random.default_rng(0),
        failure_rng=np.random.default_rng(2),
    )  # fmt: skip
    assert cluster.scale(Pool.INTERACTIVE, 1) == 1
    inst = cluster.instances[0]
    grant = inst.started_s
    assert grant > 10.0 and inst.state == InstanceState.STARTING and inst.ready_s == grant
    cluster.run_until(10.0)
    assert inst.state == InstanceState.STARTING and cluster.gpu_seconds() == 0.0
    assert list(cluster.outcome[:2]) == [Outcome.PENDING, Outcome.PENDING]
    assert cluster.faults.reclaims[Pool.INTERACTIVE] == 0  # no notice before its grant
    assert cluster.faults.until[inst.instance_id] > grant
    cluster.run_until(20.0)
    assert cluster.scale(Pool.INTERACTIVE, -1) == -1
    assert inst.state == InstanceState.STOPPED and cluster.gpu_seconds() == 0.0
