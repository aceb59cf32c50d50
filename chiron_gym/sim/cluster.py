"""The cluster: pools of instances, global request-group queues, routing, scaling, accounting.

Routing (Chiron): a request goes to an instance of its own type with room under its batch cap
(the least loaded one; ``sim/routing.py``), else to a mixed instance, else (a disaggregated
cluster) to a prefill instance, else it waits in its class's global queue. An instance may fail
(a drawn time, or a scripted one): the requests it held go back to the global queues, or are
refused, and its billing ends.
Instances pull from the queues whenever they gain room (a request finishes, the instance becomes
ready, its cap is raised): interactive and batch instances from their own class, mixed and
prefill instances interactive first, then batch.

Disaggregated (prefill and decode pools): a request whose prompt is done on a prefill instance is
handed to the least loaded decode instance with room under its batch cap (else it waits for one,
interactive first, holding its prefill KV); the decode instance allocates its blocks at an
iteration start (``InstanceBase._load_remote``) and reads its KV over the cluster's link
(``KVLink``); when the read ends the prefill instance frees its blocks and the request waits on
the decode instance to sample its first token there. Its TTFT therefore counts the prefill, the
wait for a decode instance, the transfer and the first decode iteration.

Accounting is the ledger's (``sim/ledger.py``): every arrived request is, at any time, in exactly
one ``Outcome``; GPU-seconds count every instance from the moment it was asked for until it stops,
cold start and draining included.

The cluster's state, its reports and the bookkeeping of one request are ``ClusterBase``'s
(``sim/cluster_base.py``); its specs (``PoolSpec``, ``ClusterConfig``) are in ``sim/specs.py``.
"""

from __future__ import annotations

import math
from typing import Any

from mypy_extensions import mypyc_attr

from chiron_gym.sim.cluster_base import (
    _FAIL,
    _ITERATION_END,
    _KICK,
    _LOADED,
    _NOTICE,
    _READY,
    _REQUEUE,
    _TAKE,
    PRIORITY_FAILURE,
    PRIORITY_KICK,
    PULLS,
    ROUTES,
    ClusterBase,
    IterationHook,
)
from chiron_gym.sim.events import PRIORITY_ARRIVAL, PRIORITY_ITERATION, PRIORITY_READY
from chiron_gym.sim.instance import Instance
from chiron_gym.sim.report import WindowReport
from chiron_gym.sim.request import (
    ALL_POOL_NAMES,
    Pool,
    RejectReason,
    Request,
    RequestClass,
)
from chiron_gym.sim.routing import least_loaded, longest_prefix
from chiron_gym.sim.specs import InstanceState

__all__ = ["ROUTES", "Cluster", "IterationHook"]


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Cluster(ClusterBase):
    """A simulated serving cluster driven by ``run_until``, ``scale`` and ``set_batch_cap``.

    What became of each request is in ``ledger`` (its columns are attributes too: ``outcome``,
    ``finish_s``, ...).
    """

    # ---- public API ----------------------------------------------------------------------------

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
                if kind == _LOADED:
                    self._on_loaded(*payload)
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
        """Add ``delta`` instances (sleeping ones woken first, ready ``wake_s`` later; the rest
        after their cold start, from the provider, which may refuse them) or drain ``-delta``;
        return the change.

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
            woken = min(delta, len(self._asleep[pool]))  # they hold GPUs: no provider asked
            for _ in range(woken):
                self._wake(pool)
                inst = self._add_instance(spec, ready_s=self.now + spec.wake_s, started_s=self.now)
                if batch_cap is not None:
                    inst.set_batch_cap(batch_cap)
            # the rest from the provider: a stockout is refused, or waits unbilled (``grants``)
            f = self.faults
            asked = delta - woken
            waits = f.grants(spec, asked, self.now) if f.active and asked else [0.0] * asked
            for wait in sorted(waits):
                granted_s = self.now + wait
                delay = spec.instance.cold_start.sample(self._rng)
                inst = self._add_instance(spec, ready_s=granted_s + delay, started_s=granted_s)
                if batch_cap is not None:
                    inst.set_batch_cap(batch_cap)
            return woken + len(waits)
        removed = 0
        live = self._live[pool]
        starting = [i for i in live if i.state == InstanceState.STARTING]
        # newest first, those still waiting for GPUs (unbilled, maybe far off) before all
        starting.sort(key=lambda i: i.started_s > self.now)  # stable: newest last in each
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
        routes = ROUTES[c]
        if tokens > self._min_tokens[c]:  # only to pools that hold it
            fit = self._fit
            routes = tuple(p for p in routes if p in fit and fit[p] >= tokens)
        if self._prefix_routing:
            assert self._hashes is not None
            inst = longest_prefix(self._live, routes, c, self._hashes[idx])
        else:
            inst = least_loaded(self._live, routes, c)
        if inst is not None:
            inst.enqueue(self._request(idx), self.events.now)
            self._wake_up(inst)
            return
        limit = self.config.max_queue[c]
        if limit is not None and len(self.queues[c]) >= limit:
            self._reject(idx, RejectReason.QUEUE_FULL)
            return
        self.queues[c].push(idx, self._group_deadline(idx))

    def _on_iteration_end(self, inst: Instance) -> None:
        now = self.events.now
        if inst.hands_off:
            for r in inst.end_iteration(now):
                self._hand_off(inst, r)
        else:
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
        self._wake_up(inst)  # what waited behind it there may be admitted at the next iteration
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
        name = f"{now:.3f} s: instance {inst.instance_id} ({ALL_POOL_NAMES[inst.pool]})"
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
        held = inst.load + len(inst.outgoing)
        f.log.append(f"{name} {'failed' if kind == _FAIL else 'taken'} ({held} held)")
        self._kill(inst)

    def _kill(self, inst: Instance) -> None:
        """The instance stops at once, billing ends; the requests it held go back to the global
        queues to start again from their prompt, or are refused (``on_failure``)."""
        now = self.events.now
        self._live[inst.pool].remove(inst)
        held = inst.fail(now)
        reject = self.config.on_failure == "reject"
        if self._transfers:
            self._cancel_transfers(held)
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

    def _stop(self, inst: Instance) -> None:
        gone = inst.instance_id in self.faults.reclaimed  # a reclaimed GPU cannot sleep
        loaded = inst.state != InstanceState.STARTING and not gone  # a cancelled start neither
        inst.state = InstanceState.STOPPED
        inst.stopped_s = self.events.now
        self._live[inst.pool].remove(inst)
        spec = self._specs[inst.pool]
        if loaded and len(self._asleep[inst.pool]) < spec.warm_instances:
            self._fall_asleep(spec)

    def _fill(self, inst: Instance) -> None:
        """Pull queued requests into an instance while it has room (a decode instance: the
        prefilled requests waiting for one)."""
        pulled = False
        limit = self._pull_limit[inst.pool]
        for c in PULLS[inst.pool]:
            queue = self.queues[c]
            while queue and inst.room_for(c):
                if limit and self._prompt[queue.head()] + self._output[queue.head()] > limit:
                    break  # the head waits for an instance that holds it
                inst.enqueue(self._request(queue.pop()), self.events.now)
                pulled = True
        if inst.pool == Pool.DECODE:
            for c, waiting in enumerate(self.handoffs):
                while waiting and inst.room_for(c):
                    r = waiting.popleft()
                    self._transfers[r.idx] = (self._transfers[r.idx][0], inst)
                    inst.hand_over(r, self.events.now)
                    pulled = True
        if pulled:
            self._wake_up(inst)  # mid-stretch: they join at the next iteration, as arrivals do
            for pool in self._limited:  # a head too long for them may have gone: they pull now
                for other in self._live[pool]:
                    if other is not inst and other.state == InstanceState.READY:
                        self._fill(other)

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
        if inst.new_loads:  # KV reads that start now, over the cluster's link
            link = self.config.kv_link
            for r in inst.new_loads:
                src = self._transfers[r.idx][0]
                dt = link.transfer_s(r.prompt_tokens + r.generated, src.spec, inst.spec)
                self.events.push(now + dt, PRIORITY_READY, _LOADED, (inst, r, dt))
            inst.new_loads.clear()
        if end is not None:
            self._push_end(inst, end)

    def _push_end(self, inst: Instance, end: float) -> None:
        inst.epoch += 1
        self.events.push(end, PRIORITY_ITERATION, _ITERATION_END, (inst, inst.epoch))

    # ---- disaggregation ------------------------------------------------------------------------

    def _hand_off(self, src: Instance, r: Request) -> None:
        """``r``'s prompt is done on prefill instance ``src``: to the least loaded decode
        instance with room, else it waits for one (holding its blocks on ``src``)."""
        dst = least_loaded(self._live, (Pool.DECODE,), r.klass)
        self._transfers[r.idx] = (src, dst)
        if dst is None:
            self.handoffs[r.klass].append(r)
            return
        dst.hand_over(r, self.events.now)
        self._wake_up(dst)

    def _on_loaded(self, dst: Instance, r: Request, dt: float) -> None:
        """``r``'s KV has been read into ``dst``: its prefill instance frees its blocks."""
        if r not in dst.loading:
            return  # its decode instance or its sender failed meanwhile
        src = self._transfers.pop(r.idx)[0]
        self.kv_transfers += 1
        self.kv_transfer_s += dt
        src.sent(r)
        dst.loaded(r)
        self._wake_up(dst)
        self._settle(src)

    def _settle(self, inst: Instance) -> None:
        """``inst`` let a request go (its blocks freed): what waits may fit; a draining one that
        holds nothing more stops."""
        if inst.has_work():
            if inst.state != InstanceState.STARTING:
                self._kick(inst)
        elif inst.state == InstanceState.DRAINING and not inst.busy:
            self._stop(inst)

    def _wake_up(self, inst: Instance) -> None:
        """``inst`` was handed work: a stretch in flight ends at its next iteration boundary,
        and an idle instance starts one."""
        end = inst.truncate_stretch(self.events.now)
        if end is not None:
            self._push_end(inst, end)
        self._kick(inst)

    def _cancel_transfers(self, held: list[Request]) -> None:
        """A failed instance held these: the transfers of those being sent are dropped, from
        the side that lives on (the sender frees its blocks, the receiver forgets them)."""
        for r in held:
            ends = self._transfers.pop(r.idx, None)
            if ends is None:
                continue
            src, dst = ends
            if src.state != InstanceState.STOPPED:  # the receiver failed
                src.sent(r)
                self._settle(src)
            elif dst is None:
                self.handoffs[r.klass].remove(r)
            elif dst.state != InstanceState.STOPPED:  # the sender failed
                dst.drop_incoming(r)
                self._wake_up(dst)
                self._settle(dst)
