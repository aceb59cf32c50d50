"""Disaggregated serving (issue 41): prefill and decode pools, the KV cache sent between them.

A hand-computed transfer (TTFT = prefill + transfer + first decode, to the microsecond), KV held
on both sides while the read runs and a decode instance without room making it wait; under
random workloads with transfers, scaling and failures: every request in exactly one state, KV
blocks conserved on both sides, and fast-forward equal to the per-iteration reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym.sim import (
    SLO,
    BatchComposition,
    Cluster,
    ClusterConfig,
    InstanceSpec,
    InstanceState,
    KVLink,
    LinearPerfModel,
    Outcome,
    Pool,
    PoolSpec,
    Workload,
)
from tests.sim.strategies import random_case, run_case
from tests.sim.test_fast_forward import assert_same_timestamps
from tests.sim.test_invariants import check_accounting, invariant_checker

PERF = LinearPerfModel(
    overhead_s=0.005, per_token_s=1e-4, prefill_pair_s=0.0, decode_context_s=1e-6
)
PREFILL = InstanceSpec(
    perf_model=PERF, kv_capacity_blocks=100, block_size_tokens=16, gpus=2, kv_bytes_per_token=1000
)
DECODE = replace(PREFILL, gpus=4, kv_capacity_blocks=40)
LINK = KVLink(bytes_per_s=1e6, latency_s=0.002)  # 1 MB/s per GPU pair: transfers of ms


def _cluster(workload: Workload, *, decode_cap: int = 8, fast_forward: bool = True) -> Cluster:
    config = ClusterConfig(
        pools=(
            PoolSpec(pool=Pool.PREFILL, instance=PREFILL, initial_instances=1),
            PoolSpec(
                pool=Pool.DECODE,
                instance=DECODE,
                initial_instances=1,
                initial_batch_cap=decode_cap,
            ),
        ),
        interactive_slo=SLO(ttft_s=10.0, itl_s=1.0),
        kv_link=LINK,
        fast_forward=fast_forward,
    )
    return Cluster(config, workload, np.random.default_rng(0))


def _one(prompt: int, output: int) -> Workload:
    return Workload.from_columns(
        arrival_s=[0.0], klass=[0], prompt_tokens=[prompt], output_tokens=[output]
    )


def test_ttft_is_prefill_plus_transfer_plus_first_decode() -> None:
    prompt, output = 100, 5
    cluster = _cluster(_one(prompt, output))
    prefill = PERF.iteration_time_s(BatchComposition([prompt], [0], 0, 0))
    # 100 tokens x 1000 B over min(2, 4) = 2 GPU pairs at 1 MB/s each, after 2 ms of latency
    transfer = 0.002 + prompt * 1000 / (2 * 1e6)
    assert LINK.transfer_s(prompt, PREFILL, DECODE) == pytest.approx(transfer, abs=1e-12)
    # the decode instance recomputes the last prompt token (context: the prompt) and samples
    first = PERF.iteration_time_s(BatchComposition([], [], 1, prompt))
    cluster.run_until(prefill + transfer / 2)
    p, d = cluster.instances
    assert p.outgoing and d.loading  # mid-transfer: held on both sides
    assert p.used_blocks == 7 and d.reserved == 7  # ceil(100 / 16) on each side
    assert cluster.summary()["interactive"].pending == 1
    cluster.run_until(60.0)
    assert cluster.outcome[0] == Outcome.MET
    ttft = cluster.first_token_s[0] - 0.0
    assert ttft == pytest.approx(prefill + transfer + first, abs=1e-6)
    # then output - 1 decodes at growing context
    rest = sum(
        PERF.iteration_time_s(BatchComposition([], [], 1, prompt + k)) for k in range(1, output)
    )
    assert cluster.finish_s[0] == pytest.approx(prefill + transfer + first + rest, abs=1e-6)
    assert p.used_blocks == 0 and not p.outgoing
    assert d.used_blocks == 0 and d.reserved == 0
    assert cluster.kv_transfers == 1
    assert cluster.kv_transfer_s == pytest.approx(transfer)


def test_a_full_decode_instance_makes_the_transfer_wait() -> None:
    """Two prompts of 336 tokens (21 blocks each) on a decode instance of 40 blocks: the
    second read waits until the first request has finished."""
    w = Workload.from_columns(
        arrival_s=[0.0, 0.0], klass=[0, 0], prompt_tokens=[336, 336], output_tokens=[40, 3]
    )
    cluster = _cluster(w)
    cluster.run_until(60.0)
    assert list(cluster.outcome) == [Outcome.MET, Outcome.MET]
    # the second's first token comes after the first request finished and its read ended
    assert cluster.first_token_s[1] > cluster.finish_s[0]
    check_accounting(cluster)


def test_handoffs_wait_for_a_decode_instance_with_room_under_its_cap() -> None:
    w = Workload.from_columns(
        arrival_s=[0.0, 0.0, 0.0],
        klass=[0, 0, 0],
        prompt_tokens=[16, 16, 16],
        output_tokens=[50, 50, 50],
    )
    cluster = _cluster(w, decode_cap=1)
    cluster.run_until(0.05)  # all three prefilled in one iteration; one slot on the decode side
    assert len(cluster.handoffs[0]) == 2
    cluster.run_until(60.0)
    assert list(cluster.outcome) == [Outcome.MET] * 3
    first = sorted(cluster.first_token_s)
    assert first[1] > sorted(cluster.finish_s)[0]  # the next starts once the first is done


def test_a_swapped_request_with_tokens_goes_through_prefill_and_decode() -> None:
    """A batch request swapped out of a mixed instance (for an interactive one) goes back to the
    queue with tokens generated; a prefill instance recomputes them all and hands it off, and
    the decode instance goes on from there. The same in both modes."""
    mixed = replace(PREFILL, gpus=1)
    small_budget = replace(PREFILL, gpus=1, max_num_batched_tokens=40)
    out = []
    for ff in (True, False):
        config = ClusterConfig(
            pools=(
                PoolSpec(pool=Pool.MIXED, instance=mixed, initial_batch_cap=1),
                PoolSpec(pool=Pool.PREFILL, instance=small_budget),
                PoolSpec(pool=Pool.DECODE, instance=replace(DECODE, kv_capacity_blocks=100)),
            ),
            swap_requeue_s=0.0,
            kv_link=LINK,
            fast_forward=ff,
        )
        w = Workload.from_columns(
            arrival_s=[0.0, 0.0, 0.05, 0.05],
            klass=[1, 1, 0, 1],
            prompt_tokens=[16, 600, 16, 16],
            output_tokens=[400, 5, 5, 5],
            deadline_s=[1e3, 1e3, np.nan, 1e3],
        )
        cluster = Cluster(config, w, np.random.default_rng(0), aggregate=ff)
        cluster.run_until(200.0)
        assert list(cluster.outcome) == [Outcome.MET] * 4
        assert cluster.requeued >= 1
        assert all(not i.has_work() and i.used_blocks == i.reserved == 0 for i in cluster.instances)
        out.append(cluster)
    assert_same_timestamps(*out)


def test_a_draining_decode_instance_stops_when_its_sender_fails() -> None:
    config = ClusterConfig(
        pools=(
            PoolSpec(pool=Pool.PREFILL, instance=PREFILL, initial_instances=2),
            PoolSpec(pool=Pool.DECODE, instance=DECODE),
        ),
        kv_link=KVLink(bytes_per_s=1e5, latency_s=0.002),  # a read of 0.5 s
        failures_at=((0.1, Pool.PREFILL),),
        interactive_slo=SLO(ttft_s=10.0),
    )
    cluster = Cluster(config, _one(100, 5), np.random.default_rng(0))
    cluster.run_until(0.05)  # prefilled on instance 0, being read into the decode instance
    p0, _, d = cluster.instances
    assert p0.outgoing and d.loading
    assert cluster.scale(Pool.DECODE, -1) == -1  # drains: it holds a read
    cluster.run_until(100.0)  # instance 0 fails mid-read: the request starts again
    assert d.state == InstanceState.STOPPED and d.stopped_s == pytest.approx(0.1)
    assert cluster.outcome[0] == Outcome.PENDING  # no decode instance left to take it
    assert cluster.gpu_seconds() == pytest.approx(2 * 0.1 + 2 * 100.0 + 4 * 0.1)


def test_a_disaggregated_cluster_needs_both_pools() -> None:
    with pytest.raises(ValueError, match="both a prefill and a decode pool"):
        ClusterConfig(pools=(PoolSpec(pool=Pool.PREFILL, instance=PREFILL),))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_disaggregated_clusters_conserve_requests_and_blocks(seed: int) -> None:
    """Transfers, scaling, preemption (tight KV) and, half the time, failures: KV within
    capacity and held exactly by the requests on both sides, requests conserved."""
    case = random_case(seed, disaggregated=True, failures=seed % 2 == 0)
    errors: list[str] = []
    cluster = run_case(case, fast_forward=True, on_iteration=invariant_checker(errors))
    assert not errors, errors[:5]
    check_accounting(cluster)
    if not case.config.has_failures:  # left to drain with servers: everything ended
        assert cluster.summary()["interactive"].pending + cluster.summary()["batch"].pending == 0


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fast_forward_matches_reference_with_disaggregation(seed: int) -> None:
    case = random_case(seed, disaggregated=True, failures=seed % 3 == 0, prefix=seed % 2 == 0)
    ff = run_case(case, fast_forward=True)
    ref = run_case(case, fast_forward=False)
    assert_same_timestamps(ff, ref)
    assert ff.kv_transfers == ref.kv_transfers
