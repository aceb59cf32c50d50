"""The cluster: pools of instances, global request-group queues, routing, scaling, accounting.

Routing (Chiron): a request goes to an instance of its own type with room under its batch cap
(the least loaded one; ``sim/routing.py``), else to a mixed instance, else it waits in its
class's global queue. An instance may fail (a drawn time, or a scripted one): the requests it
held go back to the global queues, or are refused, and its billing ends.
Instances pull from the queues whenever they gain room (a request finishes, the instance becomes
ready, its cap is raised): interactive and batch instances from their own class, mixed instances
interactive first, then batch.

Accounting is the ledger's (``sim/ledger.py``): every arrived request is, at any time, in exactly
one ``Outcome``; GPU-seconds count every instance from the moment it was asked for until it stops,
cold start and draining included.

The cluster's specs (``PoolSpec``, ``ClusterConfig``) are in ``sim/specs.py``; what its reports
say about the instances is read off them in ``sim/instance_report.py``.

Why one module of over 450 lines: it is one class whose event handlers, routing, pulls and
scaling all act on the same instances and queues in one event order; the accounting, the
instance model, the queues, the specs and the reports already live in their own modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.events import (
    PRIORITY_ARRIVAL,
    PRIORITY_ITERATION,
    PRIORITY_READY,
    EventQueue,
)
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
from chiron_gym.sim.request import POOL_NAMES, Pool, RejectReason, Request, RequestClass, Workload
from chiron_gym.sim.routing import least_loaded, longest_prefix
from chiron_gym.sim.specs import ClusterConfig, InstanceState, PoolSpec

PRIORITY_KICK = PRIORITY_ARRIVAL + 1  # an idle instance starts after same-instant arrivals
PRIORITY_FAILURE = PRIORITY_KICK + 1  # a failure comes after everything else of its instant
_ITERATION_END, _READY, _KICK, _REQUEUE, _FAIL, _NOTICE, _TAKE = 0, 1, 2, 3, 4, 5, 6
# Pools that may serve a class, in routing order.
ROUTES: dict[int, tuple[Pool, ...]] = {
    RequestClass.INTERACTIVE: (Pool.INTERACTIVE, Pool.MIXED),
    RequestClass.BATCH: (Pool.BATCH, Pool.MIXED),
}
# Called after every iteration start with the instance, the time, the iteration's end (None: it
# idles) and how many requests ran before (the tests check the instance's invariants with it).
IterationHook = Callable[[Instance, float, "float | None", int], None]
# Classes a pool pulls from the global queues, in order.
PULLS: dict[Pool, tuple[int, ...]] = {
    Pool.INTERACTIVE: (RequestClass.INTERACTIVE,),
    Pool.MIXED: (RequestClass.INTERACTIVE, RequestClass.BATCH),
    Pool.BATCH: (RequestClass.BATCH,),
}


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Cluster(LedgerColumns):
    """A simulated serving cluster driven by ``run_until``, ``scale`` and ``set_batch_cap``.

    What became of each request is in ``ledger`` (its columns are attributes too: ``outcome``,
    ``finish_s``, ...).
    """

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
        self.queues = (
            GroupQueue(config.group_granularity_s),
            GroupQueue(config.group_granularity_s),
        )
        self.ledger = Ledger(workload)
        self.requeued = 0  # swapped batch requests handed back to the global queue
        # Requests back in a global queue with progress made (the queue holds indices only).
        self._resume: dict[int, Request] = {}
        self._horizon_s = 0.0
        self._max_tokens = [self._largest_kv_tokens(c) for c in RequestClass]
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
        for t, pool in sorted(config.failures_at):
            self.events.push(t, PRIORITY_FAILURE, _FAIL, pool)
        for spec in config.pools:
            for _ in range(spec.initial_instances):
                self._add_instance(spec, ready_s=0.0)
            for _ in range(spec.warm_instances):
                self._fall_asleep(spec)

    # ---- public API ----------------------------------------------------------------------------

    def unchanging(self) -> tuple[object, ...]:
        """What never changes once built (the configuration, the pools' instance types and
        performance models, the workload and its columns): a snapshot shares it rather than
        copying it (``AutoscaleEnv.snapshot``)."""
        return (
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

    def run_until(self, t_end_s: float) -> WindowReport:
        """Advance simulated time to ``t_end_s``; report the window since the previous report."""
        self.run_to(t_end_s)
        return self._window_report()

    def run_to(self, t_end_s: float) -> None:
        """Advance simulated time to ``t_end_s`` without closing the report window."""
        if t_end_s < self.now:
            raise ValueError(f"run_until({t_end_s}) is before the clock ({self.now} s)")
        self._horizon_s = t_end_s
        events = self.events
        ledger = self.ledger
        arrival = self._arrival
        n = len(arrival)
        while True:
            i = ledger.num_arrived
            t_arr = arrival[i] if i < n else math.inf
            t_ev, prio = events.peek()
            if t_arr <= t_end_s and (t_arr < t_ev or (t_arr == t_ev and prio > PRIORITY_ARRIVAL)):
                events.now = t_arr
                self._arrive(i)
            elif t_ev <= t_end_s:
                _, kind, payload = events.pop()
                if kind == _ITERATION_END:
                    inst, epoch = payload
                    if epoch == inst.epoch:  # else a stretch cut short: its old end is stale
                        self._on_iteration_end(inst)
                    continue
                if kind == _REQUEUE:
                    self._on_requeue(*payload)
                    continue
                if kind >= _FAIL:
                    self._on_fault(kind, payload)
                    continue
                inst = payload
                if kind == _READY:
                    self._on_ready(inst)
                else:
                    self._on_kick(inst)
            else:
                break
        events.now = t_end_s

    def scale(self, pool: Pool, delta: int, batch_cap: int | None = None) -> int:
        """Add ``delta`` instances (after their cold start) or drain ``-delta``; return the change.

        New instances start with ``batch_cap`` (default: the pool's initial cap). Scaling down
        cancels starting instances first (newest first), then drains the least
        loaded ready ones: a draining instance takes no new requests and stops when its own are
        done.
        """
        spec = self._specs.get(pool)
        if spec is None:
            if delta > 0:
                raise ValueError(f"the cluster has no {pool.name.lower()} pool")
            return 0
        if delta > 0:
            # a stockout: the provider has no GPUs for this one (``PoolSpec.stockout_probability``)
            n = delta if not self.faults.active else self.faults.granted(spec, delta, self.now)
            for _ in range(n):
                if self._asleep[pool]:
                    self._wake(pool)
                    delay = spec.wake_s
                else:
                    delay = spec.instance.cold_start.sample(self._rng)
                inst = self._add_instance(spec, ready_s=self.now + delay)
                if batch_cap is not None:
                    inst.set_batch_cap(batch_cap)
            return n
        removed = 0
        live = self._live[pool]
        starting = [i for i in live if i.state == InstanceState.STARTING]
        for inst in reversed(starting):
            if removed == -delta:
                return -removed
            self._stop(inst)
            removed += 1
        ready = sorted(
            (i for i in live if i.state == InstanceState.READY),
            key=lambda i: (i.load, -i.instance_id),
        )
        for inst in ready:
            if removed == -delta:
                break
            inst.state = InstanceState.DRAINING
            if not inst.has_work() and not inst.busy:
                self._stop(inst)
            removed += 1
        return -removed

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

    def instance_stats(self) -> list[InstanceStats]:
        """Counters of every ready or draining instance, for a per-instance control loop."""
        return instance_stats(self._live)

    def set_instance_cap(self, instance_id: int, cap: int) -> None:
        """Set one live instance's batch cap (the local loop of Chiron runs per instance)."""
        inst = self.instances[instance_id]
        if inst.state != InstanceState.STOPPED:
            self._set_cap(inst, cap)

    def set_batch_cap(self, pool: Pool, cap: int) -> None:
        """Set the batch cap of every instance of a pool (clipped to the instance type's limit)."""
        for inst in self._live[pool]:
            self._set_cap(inst, cap)

    def _set_cap(self, inst: Instance, cap: int) -> None:
        inst.set_batch_cap(cap)
        if inst.state == InstanceState.READY:
            self._fill(inst)  # a raised cap admits queued work now

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

    # ---- events --------------------------------------------------------------------------------

    def _arrive(self, idx: int) -> None:
        c = self._klass[idx]
        self.ledger.arrive(idx, c)
        tokens = self._prompt[idx] + self._output[idx]
        if self._max_tokens[c] == 0:
            self._reject(idx, RejectReason.NO_POOL)
            return
        if tokens > self._max_tokens[c]:
            self._reject(idx, RejectReason.TOO_LONG)
            return
        if self._prefix_routing:
            assert self._hashes is not None
            inst = longest_prefix(self._live, ROUTES[c], c, self._hashes[idx])
        else:
            inst = least_loaded(self._live, ROUTES[c], c)
        if inst is not None:
            inst.enqueue(self._request(idx), self.events.now)
            end = inst.truncate_stretch(self.events.now)
            if end is not None:
                self._push_end(inst, end)
            self._kick(inst)
            return
        limit = self.config.max_queue[c]
        if limit is not None and len(self.queues[c]) >= limit:
            self._reject(idx, RejectReason.QUEUE_FULL)
            return
        self.queues[c].push(idx, self._group_deadline(idx))

    def _on_iteration_end(self, inst: Instance) -> None:
        now = self.events.now
        for r in inst.end_iteration(now):
            self._finish(r)
        if inst.state == InstanceState.READY:
            self._fill(inst)
        if inst.has_work():
            self._start(inst)
        elif inst.state == InstanceState.DRAINING:
            self._stop(inst)

    def _on_ready(self, inst: Instance) -> None:
        if inst.state != InstanceState.STARTING:
            return  # cancelled while starting
        inst.state = InstanceState.READY
        self._fill(inst)

    def _on_requeue(self, inst: Instance, r: Request, swaps: int) -> None:
        if r.swaps != swaps or not inst.release_swapped(r):
            return  # resumed (and maybe swapped again) since
        self.requeued += 1
        self._resume[r.idx] = r
        self.queues[RequestClass.BATCH].push(r.idx, r.deadline_s)
        for pool in ROUTES[RequestClass.BATCH]:
            for other in self._live[pool]:
                if other.state == InstanceState.READY and other.room_for(RequestClass.BATCH):
                    self._fill(other)

    def _on_kick(self, inst: Instance) -> None:
        inst.kicked = False
        active = inst.state in (InstanceState.READY, InstanceState.DRAINING)
        if active and not inst.busy and inst.has_work():
            self._start(inst)

    def _on_fault(self, kind: int, what: Any) -> None:
        """A failure (drawn, or a scripted pool's oldest live one), a reclaim notice or take."""
        f, now = self.faults, self.events.now
        if not isinstance(what, Instance):  # scripted
            f.scripted[what].pop(0)
            if not self._live[what]:
                return
            what = self._live[what][0]
        inst: Instance = what
        if inst.state == InstanceState.STOPPED:
            return  # stopped (scaled down, or drained under notice) before this came
        name = f"{now:.3f} s: instance {inst.instance_id} ({POOL_NAMES[inst.pool]})"
        if kind == _NOTICE:
            f.reclaims[inst.pool] += 1
            f.reclaimed.add(inst.instance_id)
            f.log.append(f"{name} reclaim notice")
            if inst.state != InstanceState.STARTING:
                inst.state = InstanceState.DRAINING
                take = now + self._specs[inst.pool].reclaim_notice_s
                f.until[inst.instance_id] = take
                self.events.push(take, PRIORITY_FAILURE, _TAKE, inst)
                if not inst.has_work() and not inst.busy:
                    self._stop(inst)
                return
        elif kind == _FAIL:
            f.failures[inst.pool] += 1
        f.log.append(f"{name} {'failed' if kind == _FAIL else 'taken'} ({inst.load} held)")
        self._kill(inst)

    def _kill(self, inst: Instance) -> None:
        """The instance stops at once, billing ends; the requests it held go back to the global
        queues to start again from their prompt, or are refused (``on_failure``)."""
        now = self.events.now
        self._live[inst.pool].remove(inst)
        held = inst.fail(now)
        reject = self.config.on_failure == "reject"
        for r in held:
            self._resume.pop(r.idx, None)
            if reject:
                self._reject(r.idx, RejectReason.INSTANCE_FAILED)
            else:
                self.queues[r.klass].push(r.idx, self._group_deadline(r.idx))
        for pool in Pool:
            for other in self._live[pool]:
                if other.state == InstanceState.READY:
                    self._fill(other)

    # ---- helpers -------------------------------------------------------------------------------

    def _largest_kv_tokens(self, klass: int) -> int:
        sizes = [
            self._specs[p].instance.kv_capacity_tokens for p in ROUTES[klass] if p in self._specs
        ]
        return max(sizes, default=0)

    def _add_instance(self, spec: PoolSpec, ready_s: float) -> Instance:
        now = self.events.now
        inst = Instance(
            instance_id=len(self.instances),
            pool=spec.pool,
            spec=spec.instance,
            batch_cap=spec.initial_batch_cap,
            started_s=now,
            ready_s=ready_s,
            aggregate=self._aggregate,
            prefix_unit_tokens=self._unit_tokens,
        )
        self.instances.append(inst)
        self._live[spec.pool].append(inst)
        if inst.state == InstanceState.STARTING:
            self.events.push(ready_s, PRIORITY_READY, _READY, inst)
        if self.faults.active:
            for t, what in self.faults.draw(inst.instance_id, spec, now):
                self.events.push(t, PRIORITY_FAILURE, _FAIL if what == FAIL else _NOTICE, inst)
        return inst

    def _stop(self, inst: Instance) -> None:
        gone = inst.instance_id in self.faults.reclaimed  # a reclaimed GPU cannot sleep
        loaded = inst.state != InstanceState.STARTING and not gone  # a cancelled start neither
        inst.state = InstanceState.STOPPED
        inst.stopped_s = self.events.now
        self._live[inst.pool].remove(inst)
        spec = self._specs[inst.pool]
        if loaded and len(self._asleep[inst.pool]) < spec.warm_instances:
            self._fall_asleep(spec)

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

    def _fill(self, inst: Instance) -> None:
        """Pull queued requests into an instance while it has room."""
        pulled = False
        for c in PULLS[inst.pool]:
            queue = self.queues[c]
            while queue and inst.room_for(c):
                inst.enqueue(self._request(queue.pop()), self.events.now)
                pulled = True
        if pulled:
            if inst.busy:  # mid-stretch: they join at the next iteration, as an arrival does
                end = inst.truncate_stretch(self.events.now)
                if end is not None:
                    self._push_end(inst, end)
            self._kick(inst)

    def _kick(self, inst: Instance) -> None:
        if not inst.busy and not inst.kicked:
            inst.kicked = True
            self.events.push(self.events.now, PRIORITY_KICK, _KICK, inst)

    def _start(self, inst: Instance) -> None:
        # A stretch may run past arrivals: one routed here cuts it short (``_arrive``); the
        # others see only its load, which no stretch changes. It never runs past the control
        # horizon, where reports and actions see every instance's state.
        hook = self._on_iteration
        before = len(inst.running) if hook is not None else 0
        horizon, now = self._horizon_s, self.events.now
        if self.faults.active:
            horizon = self.faults.horizon(inst.instance_id, inst.pool, horizon, now)
        end = inst.start_iteration(now, horizon, self._fast_forward)
        if hook is not None:
            hook(inst, self.events.now, end, before)
        if inst.new_swaps:
            after = self.config.swap_requeue_s
            if after is not None:
                for r in inst.new_swaps:
                    self.events.push(
                        self.events.now + after, PRIORITY_READY, _REQUEUE, (inst, r, r.swaps)
                    )
            inst.new_swaps.clear()
        if end is not None:
            self._push_end(inst, end)

    def _push_end(self, inst: Instance, end: float) -> None:
        inst.epoch += 1
        self.events.push(end, PRIORITY_ITERATION, _ITERATION_END, (inst, inst.epoch))

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

    def _window_report(self) -> WindowReport:
        windows, live, instances = self._pool_windows, self._live, self.instances
        pools = {POOL_NAMES[p]: windows.report(p, live[p], instances) for p in Pool}
        queued = [len(q) for q in self.queues]
        return self.ledger.close_window(
            self.now, held_per_class(self._live, queued), queued, pools, self.gpu_seconds()
        )
