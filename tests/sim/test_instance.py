"""Instance mechanics: KV preemption by recompute, swaps on mixed instances, admission order."""

from __future__ import annotations

import numpy as np
import pytest

from chiron_gym.sim import LinearPerfModel, Outcome, Pool, Workload
from tests.conftest import make_cluster, small_spec

PERF = LinearPerfModel(overhead_s=0.01, per_token_s=1e-5, prefill_pair_s=0.0, decode_context_s=0.0)


@pytest.mark.parametrize("fast_forward", [True, False])
def test_kv_exhaustion_preempts_the_newest_request(fast_forward: bool) -> None:
    """Two requests outgrow a 10-block cache: the newer one is recomputed, both finish."""
    workload = Workload.from_columns(
        arrival_s=[0.0, 0.001], klass=[0, 0], prompt_tokens=[40, 40], output_tokens=[60, 60]
    )
    spec = small_spec(perf_model=PERF, kv_capacity_blocks=10, block_size_tokens=16)
    cluster = make_cluster(workload, {Pool.INTERACTIVE: (1, 4)}, spec, fast_forward=fast_forward)
    cluster.run_until(100.0)
    assert list(cluster.preemptions) == [0, 1]
    assert np.all(cluster.outcome != Outcome.PENDING)
    # The older request was never interrupted: it finishes first.
    assert cluster.finish_s[0] < cluster.finish_s[1]


@pytest.mark.parametrize("fast_forward", [True, False])
def test_interactive_evicts_batch_on_mixed_instance(fast_forward: bool) -> None:
    """A full mixed instance swaps its newest batch request to CPU for an interactive one."""
    workload = Workload.from_columns(
        arrival_s=[0.0, 0.0, 1.0],
        klass=[1, 1, 0],
        prompt_tokens=[100, 100, 50],
        output_tokens=[500, 500, 20],
        deadline_s=[1e4, 1e4, np.nan],
    )
    spec = small_spec(perf_model=PERF)
    cluster = make_cluster(workload, {Pool.MIXED: (1, 2)}, spec, fast_forward=fast_forward)
    cluster.run_until(1.0 + 1e-9)
    inst = cluster.live_instances(Pool.MIXED)[0]
    cluster.run_until(1.2)
    assert inst.swap_outs == 1
    cluster.summary()  # syncs in-flight timestamps into the ledger
    assert cluster.first_token_s[2] - 1.0 < 0.1  # the interactive request did not wait for batch
    cluster.run_until(100.0)
    # The evicted batch request resumed from its swapped KV (no recompute) after the interactive.
    assert cluster.preemptions[1] == 0
    assert cluster.finish_s[1] > cluster.finish_s[2]
    assert np.all(cluster.outcome == Outcome.MET)


def test_interactive_admitted_before_batch() -> None:
    """With both classes waiting, the instance admits interactive first (FCFS within class)."""
    workload = Workload.from_columns(
        arrival_s=[0.0, 0.0, 0.0, 0.0],
        klass=[1, 0, 1, 0],
        prompt_tokens=[10, 10, 10, 10],
        output_tokens=[5, 5, 5, 5],
        deadline_s=[1e4, np.nan, 1e4, np.nan],
    )
    cluster = make_cluster(workload, {Pool.MIXED: (1, 1)}, small_spec(perf_model=PERF))
    cluster.run_until(10.0)
    order = list(np.argsort(cluster.admitted_s, kind="stable"))
    assert order == [1, 3, 0, 2]


def test_request_too_long_for_any_cache_is_rejected() -> None:
    """A request that cannot fit an empty KV cache is rejected with a reason, not lost."""
    workload = Workload.from_columns(
        arrival_s=[0.0], klass=[0], prompt_tokens=[5000], output_tokens=[10]
    )
    spec = small_spec(kv_capacity_blocks=100)  # 1,600 tokens
    cluster = make_cluster(workload, {Pool.INTERACTIVE: (1, 4)}, spec)
    window = cluster.run_until(1.0).classes["interactive"]
    assert (window.rejected, window.rejected_by_reason) == (1, {"too_long": 1})
    summary = cluster.summary()["interactive"]
    assert (summary.arrived, summary.rejected) == (1, 1)
    assert summary.rejected_by_reason == {"too_long": 1}
