"""What a cluster holds and what it reports: its instances, queues and ledger, and the reads.

``ClusterBase`` is a ``Cluster`` (``sim/cluster.py``) without its events: every field (the pools'
live instances, the global request-group queues, the ledger, the warm pools' sleep spans, the
faults, the disaggregated hand-offs), the public views of them (GPU-seconds, summaries, window
reports, instance stats), the bookkeeping of one request (building its ``Request``, refusing or
finishing it, a closed loop's next release) and of one instance (adding it, a warm pool's
sleep). ``Cluster`` adds what moves: arrivals, iterations, scaling, failures and KV transfers.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.events import PRIORITY_ARRIVAL, PRIORITY_READY, EventQueue
from chiron_gym.sim.faults import FAIL, Faults
from chiron_gym.sim.instance import Instance
from chiron_gym.sim.instance_report import (
    PoolWindows,
    billed_gpu_seconds,
    held_per_class,
    instance_stats,
    prefix_hit_rates,
    sync_in_flight,
)
from chiron_gym.sim.ledger import Ledger, LedgerColumns, slo_met
from chiron_gym.sim.queues import GroupQueue
from chiron_gym.sim.report import ClassReport, InstanceStats, WindowReport
from chiron_gym.sim.request import (
    ALL_POOL_NAMES,
    DISAGGREGATED,
    POOLS,
    Pool,
    RejectReason,
    Request,
    RequestClass,
    Workload,
)
from chiron_gym.sim.specs import ClusterConfig, InstanceState, PoolSpec

# Pools that may serve a class, in routing order (a prefill pool: the first half of its way).
ROUTES: dict[int, tuple[Pool, ...]] = {
    RequestClass.INTERACTIVE: (Pool.INTERACTIVE, Pool.MIXED, Pool.PREFILL),
    RequestClass.BATCH: (Pool.BATCH, Pool.MIXED, Pool.PREFILL),
}
# Classes a pool pulls from the global queues, in order (a decode pool pulls hand-offs).
PULLS: dict[Pool, tuple[int, ...]] = {
    Pool.INTERACTIVE: (RequestClass.INTERACTIVE,),
    Pool.MIXED: (RequestClass.INTERACTIVE, RequestClass.BATCH),
    Pool.BATCH: (RequestClass.BATCH,),
    Pool.PREFILL: (RequestClass.INTERACTIVE, RequestClass.BATCH),
    Pool.DECODE: (),
}
# Called after every iteration start with the instance, the time, the iteration's end (None: it
# idles) and how many requests ran before (the tests check the instance's invariants with it).
IterationHook = Callable[[Instance, float, "float | None", int], None]
# The events of the cluster's queue, and the priorities of those at the same instant.
PRIORITY_KICK = PRIORITY_ARRIVAL + 1  # an idle instance starts after same-instant arrivals
PRIORITY_FAILURE = PRIORITY_KICK + 1  # a failure comes after everything else of its instant
_ITERATION_END, _READY, _KICK, _REQUEUE, _LOADED, _FAIL, _NOTICE, _TAKE = range(8)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class ClusterBase(LedgerColumns):
    """A cluster's state and its reports (``Cluster`` drives it)."""

    def __init__(
        self,
        config: ClusterConfig,
        workload: Workload,
        rng: np.random.Generator,
        *,
        aggregate: bool = True,
        on_iteration: IterationHook | None = None,
        failure_rng: np.random.Generator | None = None,
    ) -> None:
        """``aggregate=False`` runs every iteration through the per-request scheduler (see
        ``Instance``; the same episodes, for tests); ``on_iteration``: see ``IterationHook``;
        ``failure_rng``: draws each instance's time to failure where its pool has a failure
        rate (``PoolSpec.failures_per_gpu_hour``; a stream of its own, so that a rate of 0
        changes nothing)."""
        self.config = config
        self._fast_forward = config.fast_forward
        self._slos = (config.interactive_slo, config.batch_slo)  # by class
        self._aggregate = aggregate
        self._on_iteration = on_iteration
        self.workload = workload
        self._rng = rng  # cold starts only: the workload is fixed before the episode
        self.events = EventQueue()
        self.instances: list[Instance] = []
        self._specs: dict[Pool, PoolSpec] = {p.pool: p for p in config.pools}
        self._live: dict[Pool, list[Instance]] = {p: [] for p in Pool}
        self._report_pools = POOLS + (DISAGGREGATED if config.disaggregated else ())
        self.queues = (
            GroupQueue(config.group_granularity_s),
            GroupQueue(config.group_granularity_s),
        )
        self.ledger = Ledger(workload)
        self.requeued = 0  # swapped batch requests handed back to the global queue
        # Requests back in a global queue with progress made (the queue holds indices only).
        self._resume: dict[int, Request] = {}
        self._horizon_s = 0.0
        self._fit_limits()
        self._pool_windows = PoolWindows()  # the per-pool counters as of the last report
        # Arrival columns as Python lists: scalar reads from them are several times faster.
        self._arrival: list[float] = workload.arrival_s.tolist()
        self._klass: list[int] = workload.klass.tolist()
        self._prompt: list[int] = workload.prompt_tokens.tolist()
        self._output: list[int] = workload.output_tokens.tolist()
        self._deadline: list[float] = workload.deadline_s.tolist()
        self._hashes = workload.prefix_blocks
        self._unit_tokens = workload.prefix_block_tokens if workload.prefix_blocks else 0
        self._prefix_routing = config.prefix_routing and self._hashes is not None
        # a closed loop: the next request to send when one ends (``Workload.clients``)
        self._clients = workload.clients
        self._released = min(workload.clients, len(workload)) if workload.clients else 0
        # Sleeping instances of the warm pools: billing spans [asleep since, woke (NaN: not
        # yet), GPUs x sleep_cost, pool], and per pool the spans of those asleep now.
        self.sleep_spans: list[tuple[float, float, float, Pool]] = []
        self._asleep: dict[Pool, list[int]] = {p: [] for p in Pool}
        self.wakes = 0
        self.faults = Faults(config, failure_rng)
        # Disaggregation: prefilled requests waiting for a decode instance with room, by class,
        # and, per request being sent, its prefill instance and its decode instance (None: none
        # yet).
        self.handoffs: tuple[deque[Request], deque[Request]] = (deque(), deque())
        self._transfers: dict[int, tuple[Instance, Instance | None]] = {}
        self.kv_transfers = 0  # reads completed
        self.kv_transfer_s = 0.0  # ... and their summed durations
        for t, pool in sorted(config.failures_at):
            self.events.push(t, PRIORITY_FAILURE, _FAIL, pool)
        for spec in config.pools:
            for _ in range(spec.initial_instances):
                self._add_instance(spec, ready_s=0.0)
            for _ in range(spec.warm_instances):
                self._fall_asleep(spec)

    # ---- public views --------------------------------------------------------------------------

    def unchanging(self) -> tuple[object, ...]:
        """What never changes once built (the configuration, the pools' instance types and
        performance models, the workload and its columns, and the arrival times unless a closed
        loop rewrites them): a snapshot shares it rather than copying it
        (``AutoscaleEnv.snapshot``)."""
        arrivals: tuple[object, ...] = () if self._clients else (self._arrival,)
        return (
            *arrivals,
            self.config,
            self.workload,
            *self._specs.values(),
            *(p.instance for p in self._specs.values()),
            *(p.instance.perf_model for p in self._specs.values()),
            self._klass,
            self._prompt,
            self._output,
            self._deadline,
            self._hashes,
        )

    @property
    def now(self) -> float:
        """Simulated time, seconds."""
        return self.events.now

    def live_instances(self, pool: Pool) -> list[Instance]:
        """Instances of a pool that have not stopped (starting, ready or draining)."""
        return list(self._live[pool])

    def capacity_events(self, pool: Pool) -> tuple[int, int, int, int]:
        """``pool``'s instances that failed, reclaim notices, instances refused or made to wait
        (so far), and instances under a reclaim notice now."""
        f = self.faults
        under = sum(
            1
            for i in self._live[pool]
            if i.state == InstanceState.DRAINING and i.instance_id in f.reclaimed
        )
        return f.failures[pool], f.reclaims[pool], f.stockouts[pool], under

    def replace_future(self, future: Workload) -> None:
        """Replace the requests yet to arrive by ``future`` (none earlier than now): a forecast
        to plan on in a copy of the episode (``agents/forecast.py``). Arrived requests, the
        instances and the queues are untouched. An open loop's only."""
        if self._clients:
            raise ValueError("replace_future: a closed loop's arrivals follow its own clients")
        if len(future) and float(future.arrival_s[0]) < self.now:
            raise ValueError(
                f"replace_future: the new requests start at {float(future.arrival_s[0])} s, "
                f"before the clock ({self.now} s)"
            )
        if future.prefix_blocks is not None and self._hashes is None:
            raise ValueError("replace_future: the episode's requests carry no prefix blocks")
        w = self.workload = self.ledger.replace_future(future)
        self._arrival = w.arrival_s.tolist()
        self._klass = w.klass.tolist()
        self._prompt = w.prompt_tokens.tolist()
        self._output = w.output_tokens.tolist()
        self._deadline = w.deadline_s.tolist()
        self._hashes = w.prefix_blocks

    def all_decided(self) -> bool:
        """Every request of the workload has arrived and ended (finished or refused)."""
        ledger = self.ledger
        n = len(self._arrival)
        return ledger.num_arrived == n and not bool(np.any(ledger.outcome == 0))

    def settled(self) -> list[object]:
        """What this episode will not change again: the instances that stopped (scaled down,
        drained, failed or taken). Nothing writes to one after ``_stop`` or ``fail`` but a kick
        event of the same instant clearing its flag, which ``run_to`` handles before it returns,
        so never across a snapshot. A snapshot shares them as it shares ``unchanging`` (its cost
        follows the live state, not the instances an episode has had)."""
        return [i for i in self.instances if i.state == InstanceState.STOPPED]

    def instance_stats(self) -> list[InstanceStats]:
        """Counters of every ready or draining instance, for a per-instance control loop."""
        return instance_stats(self._live)

    def gpu_seconds(self, t0: float = 0.0, t1: float | None = None) -> float:
        """GPU-seconds billed within ``[t0, t1]`` (default: the episode so far)."""
        end = self.now if t1 is None else t1
        return billed_gpu_seconds(self.instances, self.sleep_spans, end, t0)

    def priced_gpu_seconds(self) -> float:
        """GPU-seconds of the episode so far, each pool's at its ``gpu_price``."""
        price = {p: spec.gpu_price for p, spec in self._specs.items()}
        return billed_gpu_seconds(self.instances, self.sleep_spans, self.now, price=price)

    def sleeping(self, pool: Pool) -> int:
        """Instances of ``pool`` asleep in its warm pool now."""
        return len(self._asleep[pool])

    def prefix_hit_rates(self) -> dict[str, float]:
        """Per pool with a prefix cache that looked anything up: the share of prompt tokens
        found cached, over the episode so far (vLLM's prefix cache hit rate)."""
        return prefix_hit_rates(self.instances)

    def summary(self, latencies: bool = True) -> dict[str, ClassReport]:
        """Per-class outcomes of every request arrived so far (``Ledger.summary``)."""
        sync_in_flight(self.ledger, self.instances, self._resume.values())
        queued = [len(q) for q in self.queues]
        return self.ledger.summary(
            queued, self.now, self.config.interactive_slo.ttft_s, latencies=latencies
        )

    def _window_report(self) -> WindowReport:
        windows, live, instances = self._pool_windows, self._live, self.instances
        pools = {
            ALL_POOL_NAMES[p]: windows.report(p, live[p], instances) for p in self._report_pools
        }
        queued = [len(q) for q in self.queues]
        return self.ledger.close_window(
            self.now, held_per_class(self._live, queued), queued, pools, self.gpu_seconds()
        )

    # ---- one request ---------------------------------------------------------------------------

    def _fit_limits(self) -> None:
        """The longest request (prompt and output) each pool holds (``_fit``; a prefill pool's
        requests go on to the decode pool, so the shorter of the two), and per class the longest
        some pool that serves it holds (``_max_tokens``: longer ones are refused) and the longest
        all of them hold (``_min_tokens``: a longer one is routed only where it fits). A pool
        that holds less than a class it pulls may send it pulls only requests that fit it
        (``_pull_limit``; 0: no check)."""
        specs = self._specs
        fit = {p: s.instance.kv_capacity_tokens for p, s in specs.items()}
        if Pool.PREFILL in fit:
            fit[Pool.PREFILL] = min(fit[Pool.PREFILL], fit[Pool.DECODE])
        self._fit = fit
        self._max_tokens: list[int] = []
        self._min_tokens: list[int] = []
        for c in RequestClass:
            sizes = [fit[p] for p in ROUTES[c] if p in fit]
            self._max_tokens.append(max(sizes, default=0))
            self._min_tokens.append(min(sizes, default=0))
        self._pull_limit: dict[Pool, int] = {}
        for p in Pool:
            longest = max((self._max_tokens[c] for c in PULLS[p]), default=0)
            self._pull_limit[p] = fit[p] if p in fit and fit[p] < longest else 0
        self._limited = tuple(p for p in Pool if self._pull_limit[p])

    def _request(self, idx: int) -> Request:
        if self._resume:
            r = self._resume.pop(idx, None)
            if r is not None:
                return r
        return Request(
            idx,
            self._klass[idx],
            self._arrival[idx],
            self._prompt[idx],
            self._output[idx],
            self._deadline[idx],
            () if self._hashes is None else self._hashes[idx],
        )

    def _group_deadline(self, idx: int) -> float:
        if self._klass[idx] == RequestClass.BATCH:
            return self._deadline[idx]
        ttft = self.config.interactive_slo.ttft_s
        return self._arrival[idx] + (0.0 if ttft is None else ttft)

    def _reject(self, idx: int, reason: RejectReason) -> None:
        self.ledger.reject(idx, self._klass[idx], reason)
        if self._clients:
            self._release()

    def _finish(self, r: Request) -> None:
        ttft = r.ttft_s
        itl = r.mean_itl_s
        ok = slo_met(self._slos[r.klass], ttft, itl)
        if r.klass == RequestClass.BATCH:
            ok = ok and r.finish_s <= r.deadline_s
        self.ledger.finish_held(r, ok, ttft, itl)
        if self._clients:
            self._release()

    def _release(self) -> None:
        """A closed loop's client whose request ended sends the next one now (requests are
        released in workload order at non-decreasing times, so arrivals stay sorted)."""
        k = self._released
        if k < len(self._arrival):
            now = self.events.now
            self._arrival[k] = now
            self.ledger.release(k, now)
            self._released = k + 1

    def _add_instance(
        self, spec: PoolSpec, ready_s: float, started_s: float | None = None
    ) -> Instance:
        """A new instance of ``spec``'s pool, ready at ``ready_s`` and billed from
        ``started_s`` (default now; later when it waits for GPUs); its faults drawn now."""
        now = self.events.now
        inst = Instance(
            instance_id=len(self.instances),
            pool=spec.pool,
            spec=spec.instance,
            batch_cap=spec.initial_batch_cap,
            started_s=now if started_s is None else started_s,
            ready_s=ready_s,
            aggregate=self._aggregate,
            prefix_unit_tokens=self._unit_tokens,
        )
        if inst.state == InstanceState.READY and ready_s > now:
            inst.state = InstanceState.STARTING  # waiting for GPUs, then no cold start
        self.instances.append(inst)
        self._live[spec.pool].append(inst)
        if inst.state == InstanceState.STARTING:
            self.events.push(ready_s, PRIORITY_READY, _READY, inst)
        if self.faults.active:  # drawn from its grant: it holds no GPU while it waits for one
            for t, what in self.faults.draw(inst.instance_id, spec, inst.started_s):
                self.events.push(t, PRIORITY_FAILURE, _FAIL if what == FAIL else _NOTICE, inst)
        return inst

    # ---- warm pools ----------------------------------------------------------------------------

    def _fall_asleep(self, spec: PoolSpec) -> None:
        """One instance of ``spec``'s pool goes to sleep (billed at ``sleep_cost``)."""
        self._asleep[spec.pool].append(len(self.sleep_spans))
        weight = spec.instance.gpus * spec.sleep_cost
        self.sleep_spans.append((self.events.now, math.nan, weight, spec.pool))

    def _wake(self, pool: Pool) -> None:
        """The instance asleep longest in ``pool`` wakes (its sleep span ends now)."""
        k = self._asleep[pool].pop(0)
        start, _, weight, _ = self.sleep_spans[k]
        self.sleep_spans[k] = (start, self.events.now, weight, pool)
        self.wakes += 1
