"""What the reports say about the instances, read off them.

Each ready or draining instance's counters (``instance_stats``, for a per-instance control loop),
each pool's prefix-cache hit rate over the episode (``prefix_hit_rates``) and, for each window
report, each pool's instances' states, caps and KV usage and what their counters gained in the
window (``PoolWindows``), and the requests held per class (``held_per_class``, with
``sync_in_flight`` copying their timestamps into the ledger). ``Cluster`` (``sim/cluster.py``)
holds the instances and asks these.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.instance import Instance
from chiron_gym.sim.ledger import Ledger, gpu_seconds
from chiron_gym.sim.report import InstanceStats, PoolReport
from chiron_gym.sim.request import ALL_POOL_NAMES, Pool, Request
from chiron_gym.sim.specs import InstanceState


def held_per_class(live: dict[Pool, list[Instance]], queued: list[int]) -> list[int]:
    """Requests held per class: ``queued`` in the global queues, and those in an instance (one
    being sent, prefill to decode, counts on its prefill instance)."""
    held = list(queued)
    for p in Pool:
        for inst in live[p]:
            for r in inst.running:
                held[r.klass] += 1
            for r in inst.outgoing:
                held[r.klass] += 1
            held[0] += len(inst.waiting[0])
            held[1] += len(inst.waiting[1]) + len(inst.swapped)
            for r in inst.ready:
                held[r.klass] += 1
    return held


def billed_gpu_seconds(
    instances: list[Instance],
    sleep_spans: list[tuple[float, float, float, Pool]],
    end: float,
    t0: float = 0.0,
    price: dict[Pool, float] | None = None,
) -> float:
    """GPU-seconds billed within ``[t0, end]``: each instance from its request to its stop, each
    sleeping one at its share; with ``price``, each pool's at its price per GPU."""
    if price is None:
        spans = ((i.started_s, i.stopped_s, float(i.spec.gpus)) for i in instances)
        asleep = ((a, b, w) for a, b, w, _ in sleep_spans)
    else:
        spans = ((i.started_s, i.stopped_s, i.spec.gpus * price[i.pool]) for i in instances)
        asleep = ((a, b, w * price[p]) for a, b, w, p in sleep_spans)
    total = gpu_seconds(spans, end, t0)
    if sleep_spans:
        total += gpu_seconds(asleep, end, t0)
    return total


def sync_in_flight(ledger: Ledger, instances: list[Instance], resume: Iterable[Request]) -> None:
    """Copy the timestamps of requests still held (by instances, or back in a global queue with
    progress made) into the ledger."""
    for inst in instances:
        if inst.state == InstanceState.STOPPED:
            continue
        for r in (
            *inst.running,
            *inst.waiting[0],
            *inst.waiting[1],
            *inst.swapped,
            *inst.ready,
            *inst.outgoing,
        ):
            ledger.sync(r)
    for r in resume:
        ledger.sync(r)


def instance_stats(live: dict[Pool, list[Instance]]) -> list[InstanceStats]:
    """Counters of every ready or draining instance (``live``: the instances not stopped, by
    pool), for a per-instance control loop."""
    out: list[InstanceStats] = []
    for pool in Pool:
        for inst in live[pool]:
            if inst.state == InstanceState.STARTING:
                continue
            out.append(
                InstanceStats(
                    instance_id=inst.instance_id,
                    pool=pool,
                    ready=inst.state == InstanceState.READY,
                    batch_cap=inst.batch_cap,
                    running=len(inst.running),
                    waiting=inst.num_waiting,
                    interactive_held=inst.interactive_load,
                    tokens_generated=inst.tokens_generated,
                    first_tokens=inst.first_tokens,
                    ttft_sum_s=inst.ttft_sum_s,
                    decode_tokens=inst.decode_tokens,
                    decode_token_time_s=inst.decode_token_time_s,
                )
            )
    return out


def prefix_hit_rates(instances: list[Instance]) -> dict[str, float]:
    """Per pool with a prefix cache that looked anything up: the share of prompt tokens
    found cached by ``instances``, over the episode so far (vLLM's prefix cache hit rate)."""
    out: dict[str, float] = {}
    for pool in Pool:
        queries = hits = 0
        for inst in instances:
            if inst.pool == pool:
                q, h = inst.prefix_hits()
                queries += q
                hits += h
        if queries:
            out[ALL_POOL_NAMES[pool]] = hits / queries
    return out


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class PoolWindows:
    """Per pool, its instances' counters as of the last window report: a report gives what they
    gained since."""

    def __init__(self) -> None:
        self._counters = {p: (0, 0, 0) for p in Pool}  # tokens generated, preemptions, swap-outs
        self._hits = {p: (0, 0) for p in Pool}  # prompt tokens looked up, of which cached

    def report(self, pool: Pool, live: list[Instance], instances: list[Instance]) -> PoolReport:
        """``pool``'s report: the states, caps and KV usage of its ``live`` instances (those not
        stopped) now, and what its ``instances`` (all it ever had) gained since the last one."""
        rep = PoolReport()
        caps: list[int] = []
        kv: list[float] = []
        for inst in live:
            if inst.state == InstanceState.STARTING:
                rep.starting += 1
                continue
            if inst.state == InstanceState.READY:
                rep.ready += 1
                caps.append(inst.batch_cap)
                kv.append(inst.kv_usage)
            else:
                rep.draining += 1
            rep.running += len(inst.running)
            rep.waiting += inst.num_waiting
            rep.transfers += len(inst.outgoing) + len(inst.remote) + len(inst.loading)
            if inst.hands_off:
                for r in (*inst.running, *inst.waiting[0], *inst.waiting[1]):
                    # every known token (a swapped request's generated ones too)
                    rep.prompt_tokens_queued += r.num_tokens - r.computed
        rep.batch_cap = float(np.mean(caps)) if caps else 0.0
        rep.kv_usage = float(np.mean(kv)) if kv else 0.0
        tokens = preempt = swaps = queries = hits = 0
        for inst in instances:
            if inst.pool == pool:
                tokens += inst.tokens_generated
                preempt += inst.preemptions
                swaps += inst.swap_outs
                q, h = inst.prefix_hits()
                queries += q
                hits += h
        q0, h0 = self._hits[pool]
        if queries > q0:
            rep.prefix_hit_rate = (hits - h0) / (queries - q0)
        self._hits[pool] = (queries, hits)
        before = self._counters[pool]
        rep.tokens_generated = tokens - before[0]
        rep.preemptions = preempt - before[1]
        rep.swap_outs = swaps - before[2]
        self._counters[pool] = (tokens, preempt, swaps)
        return rep
