"""Hypothesis invariants of the simulator on random clusters, workloads and scaling actions."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chiron_gym.sim import Cluster, Instance, Outcome, Pool, RequestClass
from chiron_gym.sim.cluster import IterationHook
from chiron_gym.sim.report import ClassReport
from chiron_gym.sim.request import CLASS_NAMES, RejectReason
from tests.sim.strategies import random_case, run_case


def invariant_checker(errors: list[str]) -> IterationHook:
    """An iteration hook that records every broken instance invariant in ``errors``."""

    def check(inst: Instance, now: float, end: float | None, running_before: int) -> None:
        cap_blocks = inst.spec.kv_capacity_blocks
        if not 0 <= inst.used_blocks <= cap_blocks:
            errors.append(f"KV blocks {inst.used_blocks} outside [0, {cap_blocks}]")
        inst.sync_steady()
        shared = 0 if inst.cache is None else inst.cache.excess
        holding = sum(r.blocks for r in (*inst.running, *inst.outgoing))  # sent: held till read
        if inst._stretch == 0 and inst.used_blocks != holding - shared:
            errors.append("used blocks differ from the blocks held by running requests")
        bs = inst.spec.block_size_tokens
        reading = sum(-(-(r.prompt_tokens + r.generated) // bs) for r in inst.loading)
        read = sum(r.blocks for r in inst.ready)
        if inst.reserved != reading + read:
            errors.append(f"reserved {inst.reserved} != reads {reading} + read, waiting {read}")
        if inst.used_blocks + inst.reserved > cap_blocks:
            errors.append("used and reserved blocks exceed the KV cache")
        if inst.cache is not None:
            errors.extend(cache_errors(inst))
        if len(inst.running) > max(inst.batch_cap, running_before):
            errors.append(
                f"running {len(inst.running)} > cap {inst.batch_cap} (was {running_before})"
            )
        if inst.state not in (0, 1, 2) or inst.state == 0:
            errors.append(f"iteration on an instance in state {inst.state.name}")
        if end is not None and end < now:
            errors.append("iteration ends before it starts")

    return check


def cache_errors(inst: Instance) -> list[str]:
    """Broken block-accounting invariants of an instance's prefix cache: the free queue holds
    every block not in use (and, until the next settle, the ones allocated since), each cached
    unit is referenced by exactly the running requests that hold it or is free, never both."""
    cache = inst.cache
    assert cache is not None
    out: list[str] = []
    if sum(cache.free.values()) != cache.free_blocks:
        out.append("free queue's blocks differ from its count")
    if cache.free_blocks < cache.capacity - inst.used_blocks:
        out.append(
            f"free queue {cache.free_blocks} < free blocks {cache.capacity - inst.used_blocks}"
        )
    counts: dict[int, int] = {}
    for r in (*inst.running, *inst.outgoing):
        for h in r.cached:
            counts[h] = counts.get(h, 0) + 1
    if counts != cache.refs:
        out.append("cached units' reference counts differ from the running requests' units")
    if any(k >= 0 and k in cache.refs for k in cache.free):
        out.append("a unit is both referenced and free")
    g = cache.unit_blocks
    if cache.excess != g * sum(c - 1 for c in cache.refs.values()):
        out.append("shared-block excess is off")
    for r in (*inst.waiting[0], *inst.waiting[1], *inst.swapped):
        if r.cached:
            out.append(f"request {r.idx} holds cached units while not running")
    return out


def check_accounting(cluster: Cluster) -> None:
    """Every arrived request is in exactly one state, with ordered timestamps."""
    n = cluster.num_arrived
    summary = cluster.summary()
    for name, rep in summary.items():
        assert rep.met + rep.late + rep.rejected + rep.pending == rep.arrived, name
    assert sum(rep.arrived for rep in summary.values()) == n
    done = (cluster.outcome[:n] == Outcome.MET) | (cluster.outcome[:n] == Outcome.LATE)
    arr = cluster.workload.arrival_s[:n][done]
    adm, first, fin = (
        a[:n][done] for a in (cluster.admitted_s, cluster.first_token_s, cluster.finish_s)
    )
    assert np.all(arr <= adm + 1e-12)
    assert np.all(adm <= first + 1e-12)
    assert np.all(first <= fin + 1e-12)
    # Requests held by instances or queues are exactly the pending ones.
    held = len(cluster.queues[0]) + len(cluster.queues[1])
    for inst in cluster.instances:  # one being sent counts on its prefill instance only
        held += len(inst.running) + inst.num_waiting + len(inst.outgoing)
        for r in (*inst.running, *inst.waiting[0], *inst.waiting[1], *inst.swapped):
            row = (cluster.admitted_s[r.idx], cluster.first_token_s[r.idx])
            assert np.array_equal(row, (r.admitted_s, r.first_token_s), equal_nan=True)
            assert cluster.preemptions[r.idx] == r.preemptions  # synced by summary()
    assert held == sum(rep.pending for rep in summary.values())
    check_counts_against_columns(cluster, summary)


def check_counts_against_columns(cluster: Cluster, summary: dict[str, ClassReport]) -> None:
    """The summary's counts, which the ledger keeps as requests are decided, and its output
    length statistics equal a recount from the ledger's columns (bit for bit)."""
    n = cluster.num_arrived
    w, outcome = cluster.workload, cluster.outcome[:n]
    now, ttft_slo = cluster.now, cluster.config.interactive_slo.ttft_s
    for c, name in enumerate(CLASS_NAMES):
        mine = w.klass[:n] == c
        rep = summary[name]
        assert rep.arrived == int(mine.sum())
        counts = (rep.met, rep.late, rep.rejected, rep.pending)
        kinds = (Outcome.MET, Outcome.LATE, Outcome.REJECTED, Outcome.PENDING)
        for o, got in zip(kinds, counts, strict=True):
            assert got == int((mine & (outcome == o)).sum()), (name, o)
        met = mine & (outcome == Outcome.MET)
        assert rep.met_output_tokens == int(w.output_tokens[:n][met].sum())
        reasons = cluster.reject_reason[:n][mine & (outcome == Outcome.REJECTED)]
        assert rep.rejected_by_reason == {
            r.name.lower(): int((reasons == r).sum())
            for r in RejectReason
            if r and (reasons == r).any()
        }
        pending = mine & (outcome == Outcome.PENDING)
        if c == RequestClass.BATCH:
            overdue = pending & (w.deadline_s[:n] < now)
        else:
            limit = math.inf if ttft_slo is None else ttft_slo
            first = np.isnan(cluster.first_token_s[:n])
            overdue = pending & first & (cluster.ledger.arrival_s[:n] + limit < now)
        assert rep.overdue == int(overdue.sum())
        done = mine & (outcome != Outcome.PENDING) & ~np.isnan(cluster.finish_s[:n])
        out = w.output_tokens[:n][done]
        want = (float(out.mean()), float(out.std()), len(out)) if len(out) else None
        got_stats = cluster.ledger.output_length_stats(c)
        if want is None:
            assert got_stats[2] == 0 and math.isnan(got_stats[0])
        else:
            assert got_stats == want


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
@example(61926)  # a pool whose only instance was draining when the run was left to drain
def test_invariants_hold_on_random_clusters(seed: int) -> None:
    """KV within [0, capacity], running <= cap, requests conserved, timestamps ordered."""
    case = random_case(seed)
    errors: list[str] = []
    cluster = run_case(case, fast_forward=True, on_iteration=invariant_checker(errors))
    assert not errors, errors[:5]
    check_accounting(cluster)
    # After draining, nothing is pending and every instance has let go of its KV.
    summary = cluster.summary()
    assert sum(rep.pending for rep in summary.values()) == 0
    for inst in cluster.instances:
        assert inst.used_blocks == 0 or inst.has_work()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_accounting_mid_episode(seed: int) -> None:
    """Accounting adds up at arbitrary cut points, not only after draining."""
    case = random_case(seed)
    cluster = Cluster(case.config, case.workload, np.random.default_rng(seed))
    horizon = float(case.workload.arrival_s[-1]) if len(case.workload) else 1.0
    for t in np.linspace(0, horizon, 7)[1:]:
        cluster.run_until(float(t))
        check_accounting(cluster)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_prefix_cache_conserves_blocks(seed: int) -> None:
    """With prefix caching on random clusters: the instance invariants above, blocks conserved
    with sharing (queue + used = capacity once settled), every request accounted for."""
    case = random_case(seed, prefix=True)
    errors: list[str] = []
    cluster = run_case(case, fast_forward=True, on_iteration=invariant_checker(errors))
    assert not errors, errors[:5]
    check_accounting(cluster)
    assert sum(rep.pending for rep in cluster.summary().values()) == 0
    for inst in cluster.instances:
        cache = inst.cache
        assert cache is not None
        assert inst.used_blocks == 0 and not cache.refs and cache.excess == 0
        cache.settle(inst.used_blocks)
        assert cache.free_blocks == cache.capacity
        assert cache.hit_tokens <= cache.query_tokens


def test_lowering_the_cap_never_drops_running_requests() -> None:
    """A cap below the running count stops admissions; running requests all finish."""
    from tests.conftest import burst, make_cluster

    n = 20
    workload = burst(30, np.full(n, 50))
    cluster = make_cluster(workload, {Pool.INTERACTIVE: (1, 10)})
    cluster.run_until(0.05)
    inst = cluster.live_instances(Pool.INTERACTIVE)[0]
    assert len(inst.running) == 10
    cluster.set_batch_cap(Pool.INTERACTIVE, 2)
    peak_after = 0
    t = 0.05
    while t < 30:
        t += 0.05
        cluster.run_until(t)
        peak_after = max(peak_after, len(inst.running))
        if len(inst.running) <= 2:
            break
    assert peak_after <= 10
    cluster.run_until(200.0)
    assert np.all(cluster.outcome != Outcome.PENDING)
    # Once under the cap it never ran more than 2 at once again.
    assert len(inst.running) <= 2
    assert math.isfinite(cluster.finish_s.max())
    assert int(np.sum(cluster.workload.klass == RequestClass.INTERACTIVE)) == n
