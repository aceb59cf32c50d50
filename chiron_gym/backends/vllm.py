"""The real backend: the Backend protocol over vLLM OpenAI-compatible servers, on wall-clock time.

- **Servers** are processes started from an argv template (no shell), or adopted endpoints
  (``vllm_servers.py``: launching, cold start until ``/health`` answers, draining, stopping).
- **Routing** (a router in front of unmodified vLLM, as QLM does): a request goes to an instance
  of its own pool, then to a mixed one, only while that instance's in-flight count is under its
  cap (the run-time batch size, the local level of the action); otherwise it waits in a global
  queue per class (interactive FCFS, batch earliest deadline first).
- **Replay**: the scenario's requests at ``time_scale`` wall seconds per scenario second; the
  prompt is a list of token ids of exactly the requested length, ``max_tokens`` = output tokens
  and ``ignore_eos``; each response is streamed to measure TTFT and ITL on the client side.
- **Observations** come from each server's ``/metrics`` (``vllm_client.parse_metrics``):
  running, waiting, KV usage, generated tokens, preemptions.
- **Faults**: a server whose process exits or that stops answering is marked failed and reported
  (``drain_events``); its in-flight requests are retried elsewhere once, then recorded as rejected
  with the reason. Every arrived request ends met, late, rejected or pending.

Latencies are compared with the scenario's SLOs as measured (not time-scaled); GPU-seconds are
instance-seconds of scenario time. What became of each request is kept by the simulator's ledger
(``sim/ledger.py``); all HTTP goes through ``vllm_client.py``.

Why one module of over 450 lines: it is one class, ``VllmBackend``, the Backend protocol's
methods over the router's queues and the fleet; the servers' life cycle (``vllm_servers.py``),
the HTTP client (``vllm_client.py``) and the ledger are modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import time
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

from chiron_gym.backends.base import ABSENT_STATE, PoolBounds, PoolState
from chiron_gym.backends.vllm_client import VllmClient, parse_metrics
from chiron_gym.backends.vllm_servers import Fleet, Server, ServerConfig, ServerState
from chiron_gym.openai_stream import PROMPT_ALPHABET, prompt_ids
from chiron_gym.scenario import Scenario
from chiron_gym.sim import ClassReport, InstanceStats, Pool, RequestClass, WindowReport
from chiron_gym.sim.ledger import Ledger, LedgerColumns, gpu_seconds, slo_met
from chiron_gym.sim.queues import deadline_groups
from chiron_gym.sim.request import POOL_NAMES, POOLS, Outcome, RejectReason, Workload

# The real backend's public names (``make_backend``, tests) are importable from here.
__all__ = ["Server", "ServerConfig", "ServerState", "VllmBackend", "parse_metrics"]


class VllmBackend(LedgerColumns):
    """``Backend`` over real vLLM servers (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        server: ServerConfig | None = None,
        *,
        endpoints: dict[str, list[str]] | None = None,
        time_scale: float = 1.0,
        request_timeout_s: float = 300.0,
        max_retries: int = 1,
    ) -> None:
        if server is None and not endpoints:
            raise ValueError("VllmBackend needs a ServerConfig to start servers, or endpoints")
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.scenario = scenario
        self.cfg = server
        self.endpoints = endpoints or {}
        self.time_scale = time_scale
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self._specs = {p.pool: p for p in scenario.cluster.pools}
        self._bounds = {
            pool: PoolBounds.of(spec, self._max_cap(pool)) for pool, spec in self._specs.items()
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fleet = Fleet(server)

    @property
    def servers(self) -> list[Server]:
        """This episode's servers, in the order they were started or adopted."""
        return self.fleet.servers

    # ------------------------------------------------------------------ lifecycle

    def reset(self, seed: int) -> None:
        self.close()
        self.workload = self.scenario.workload(seed)
        if self.workload.clients:
            raise ValueError(
                f"scenario {self.scenario.name!r}: a closed-loop load (arrival kind 'closed') "
                "runs on the simulator only; drive real servers with vllm bench serve"
            )
        warm = [p.pool.name.lower() for p in self.scenario.cluster.pools if p.warm_instances]
        if warm:
            raise ValueError(
                f"scenario {self.scenario.name!r}: warm pools ({', '.join(warm)}) are simulated "
                "only; real servers here start cold (set warm = 0)"
            )
        if self.scenario.cluster.has_failures:
            raise ValueError(
                f"scenario {self.scenario.name!r}: failures, spot reclaims and stockouts "
                "([failures], failures_per_gpu_hour, reclaims_per_hour, stockout_probability) "
                "are simulated only; real servers here fail only on their own"
            )
        if self.scenario.cluster.disaggregated:
            raise ValueError(
                f"scenario {self.scenario.name!r}: prefill and decode pools are simulated only"
            )
        self._loop = asyncio.new_event_loop()  # after the refusals: a refused reset leaks no loop
        self.ledger = Ledger(self.workload)
        self.fail_reason: dict[int, str] = {}
        self.retries = np.zeros(len(self.workload), dtype=np.int8)
        self.queues: tuple[deque[int], list[tuple[float, int]]] = (deque(), [])
        self._caps = {p: s.initial_batch_cap for p, s in self._specs.items()}
        self._t0_wall = time.monotonic()
        self._now = 0.0
        # prompts differ from those of earlier episodes on the same servers (prefix cache)
        self._salt = time.time_ns() // 1000 % PROMPT_ALPHABET**4
        self._tasks: set[asyncio.Task[Any]] = set()
        self.fleet.clear()
        self._client = VllmClient(self.request_timeout_s)
        for pool, spec in self._specs.items():
            urls = self.endpoints.get(pool.name.lower(), [])
            for url in urls:
                self._watch(self.fleet.adopt(pool, url, self._now))
            for _ in range(max(0, spec.initial_instances - len(urls))):
                self._watch(self.fleet.start(pool, self._now))
        # The initial pools are up when the episode starts, as in the simulator: wait for them
        # (their cold start is not part of the episode), then start the clock.
        self._loop.run_until_complete(self._until_initial_ready())
        for s in self.servers:
            s.requested_s = s.ready_s = 0.0
        self._t0_wall = time.monotonic()
        self._now = 0.0

    async def _until_initial_ready(self) -> None:
        while any(s.state == ServerState.STARTING for s in self.servers):
            await asyncio.sleep(0.2)
        failed = [s for s in self.servers if s.state == ServerState.FAILED]
        if failed:
            raise RuntimeError(f"initial servers failed to start: {self.drain_events()}")

    def arrived_since(self, since_s: float) -> tuple[Workload, npt.NDArray[np.bool_]]:
        return self.ledger.arrived_since(since_s)

    def replace_future(self, future: Workload) -> None:
        raise NotImplementedError(
            "replace_future() needs the simulator backend: a live server's traffic is its own"
        )

    def unchanging(self) -> tuple[object, ...]:
        """Nothing: live servers cannot be snapshotted (``AutoscaleEnv.snapshot`` refuses)."""
        return ()

    def close(self) -> None:
        for s in self.servers:
            self._terminate(s)
        if self._loop is not None:
            loop = self._loop
            for t in list(getattr(self, "_tasks", ())):
                t.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
            loop.close()
            self._loop = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        with contextlib.suppress(Exception):
            for s in self.servers:
                self._terminate(s)

    # ------------------------------------------------------------------ servers

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch(self, s: Server) -> None:
        """Wait, in the background, for a starting server to answer ``/health``."""
        self._spawn(self._wait_ready(s))

    async def _wait_ready(self, s: Server) -> None:
        deadline = time.monotonic() + (self.cfg.startup_timeout_s if self.cfg else 600.0)
        while s.state == ServerState.STARTING:
            if s.proc is not None and s.proc.poll() is not None:
                self._fail(
                    s, f"server {s.server_id} exited during start-up (code {s.proc.returncode})"
                )
                return
            try:
                if await self._client.healthy(s.url):
                    if s.proc is not None and s.proc.poll() is not None:
                        continue  # the answer was not its own: the exit is failed above
                    s.state = ServerState.READY
                    s.ready_s = self._clock()
                    self.fleet.events.append(
                        f"server {s.server_id} ({s.pool.name.lower()}) ready after "
                        f"{s.cold_start_s:.1f} s"
                    )
                    await self._poll_metrics(s)
                    s.tokens_before = s.metrics.get("generation_tokens", 0.0)
                    s.preemptions_before = s.metrics.get("preemptions", 0.0)
                    self._dispatch()
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                self._fail(s, f"server {s.server_id} not healthy after start-up timeout")
                return
            await asyncio.sleep(0.5)

    def _terminate(self, s: Server) -> None:
        self.fleet.stop(s, self._stop_clock)

    def _stop_clock(self) -> float:
        return self._clock() if self._loop is not None else self._now

    def _fail(self, s: Server, why: str) -> None:
        if s.state in (ServerState.STOPPED, ServerState.FAILED):
            return
        s.state = ServerState.FAILED
        s.stopped_s = self._clock()
        self.fleet.events.append(why)
        for idx in list(s.in_flight):
            self._requeue_or_reject(idx, f"server {s.server_id} failed")
        s.in_flight.clear()
        s.kill_process()

    # ------------------------------------------------------------------ requests

    def _clock(self) -> float:
        return (time.monotonic() - self._t0_wall) / self.time_scale

    @property
    def origin_monotonic(self) -> float:
        """``time.monotonic()`` at this episode's time 0 (set by ``reset``): the clock is the
        host's, so another process can replay requests beside the episode on the same time."""
        return self._t0_wall

    def _enqueue(self, idx: int, c: int, *, front: bool = False) -> None:
        """Queue request ``idx`` of class ``c``: interactive first come first served (at the
        front when ``front``: a retry), batch earliest deadline first."""
        if c != RequestClass.INTERACTIVE:
            heapq.heappush(self.queues[1], (float(self.workload.deadline_s[idx]), idx))
        elif front:
            self.queues[0].appendleft(idx)
        else:
            self.queues[0].append(idx)

    def _arrive(self, idx: int) -> None:
        c = int(self.workload.klass[idx])
        self.ledger.arrive(idx, c)
        self._enqueue(idx, c)

    def _requeue_or_reject(self, idx: int, why: str) -> None:
        c = int(self.workload.klass[idx])
        if self.retries[idx] < self.max_retries:
            self.retries[idx] += 1
            self._enqueue(idx, c, front=True)
            return
        if self.ledger.reject(idx, c, RejectReason.NO_POOL):
            self.fail_reason[idx] = why

    def _targets(self, klass: int) -> list[Server]:
        own = Pool.INTERACTIVE if klass == RequestClass.INTERACTIVE else Pool.BATCH
        out = []
        for pool in (own, Pool.MIXED):
            pool_cap = self._caps.get(pool, 0)
            ready = [
                s
                for s in self.servers
                if s.pool == pool
                and s.state == ServerState.READY
                and len(s.in_flight) < (pool_cap if s.cap is None else s.cap)
            ]
            out += sorted(ready, key=lambda s: (len(s.in_flight), s.server_id))
        return out

    def _dispatch(self) -> None:
        for c in (RequestClass.INTERACTIVE, RequestClass.BATCH):
            while self.queues[c]:
                targets = self._targets(c)
                if not targets:
                    break
                if c == RequestClass.INTERACTIVE:
                    idx = self.queues[0].popleft()
                else:
                    idx = heapq.heappop(self.queues[1])[1]
                if self.ledger.outcome[idx] != Outcome.PENDING:
                    continue  # requeued by a failed server, then its stream finished after all
                s = targets[0]
                s.in_flight.add(idx)
                s.max_in_flight = max(s.max_in_flight, len(s.in_flight))
                self._spawn(self._send(s, idx))

    async def _send(self, s: Server, idx: int) -> None:
        assert self.cfg is not None or self.endpoints
        w = self.workload
        prompt = prompt_ids(
            self._salt + idx + int(self.retries[idx]) * len(w),  # distinct, retries too
            int(w.prompt_tokens[idx]),
            self.cfg.token_id if self.cfg else ServerConfig.token_id,
        )
        model = self.cfg.served_name if self.cfg else ServerConfig.served_name
        try:
            got = await self._client.stream_completion(
                s.url, model, prompt, int(w.output_tokens[idx]), self._clock
            )
        except Exception as e:
            if idx not in s.in_flight:
                pass  # the server was failed first, and its failure requeued this request
            elif s.exited and s.state not in (ServerState.STOPPED, ServerState.FAILED):
                # requeues this request with the server's others, once each
                self._fail(
                    s,
                    f"server {s.server_id} died (exit code {s.proc.returncode if s.proc else '?'})",
                )
            else:
                s.in_flight.discard(idx)
                self.fleet.events.append(f"request {idx} on server {s.server_id} failed: {e!r}")
                self._requeue_or_reject(idx, f"request failed on server {s.server_id}: {e!r}")
            self._dispatch()
            return
        s.in_flight.discard(idx)
        arrival = float(w.arrival_s[idx])
        c = int(w.klass[idx])
        t_first, t_last = got.first_s, got.last_s
        asked = int(w.output_tokens[idx])
        if got.tokens is not None and got.tokens != asked:
            self.fleet.events.append(
                f"request {idx} on server {s.server_id}: asked for {asked} tokens, got {got.tokens}"
            )
        tokens = asked if got.tokens is None else got.tokens
        ttft = (t_first - arrival) * self.time_scale  # measured latency, wall seconds
        # per output token (a chunk may carry several tokens when the server's output runs ahead)
        itl = (t_last - t_first) * self.time_scale / max(1, tokens - 1)
        if c == RequestClass.INTERACTIVE:
            ok = slo_met(self.scenario.cluster.slo(c), ttft, itl)
        else:  # batch: its deadline, in scenario time
            ok = t_last <= float(w.deadline_s[idx])
        self.ledger.finish(
            idx,
            c,
            ok,
            int(w.output_tokens[idx]),
            first_token_s=t_first,
            finish_s=t_last,
            ttft_s=ttft,
            itl_s=itl,
        )
        if s.state == ServerState.DRAINING and not s.in_flight:
            self._terminate(s)
        self._dispatch()

    async def _poll_metrics(self, s: Server) -> None:
        try:
            s.metrics = await self._client.metrics(s.url)
            s.failures = 0
        except Exception:
            s.failures += 1
            dead = s.exited
            if dead or s.failures >= 3:
                self._fail(
                    s,
                    f"server {s.server_id} stopped answering /metrics"
                    + (f" (exit code {s.proc.returncode})" if dead and s.proc else ""),
                )

    async def _poll_all(self, servers: list[Server]) -> None:
        await asyncio.gather(*(self._poll_metrics(s) for s in servers))

    async def _run(self, until_s: float) -> None:
        w = self.workload
        n = len(w)
        while True:
            now = self._clock()
            while self.num_arrived < n and w.arrival_s[self.num_arrived] <= min(now, until_s):
                self._arrive(self.num_arrived)
            self._dispatch()
            for s in self.servers:
                if s.exited and s.state <= ServerState.DRAINING:
                    assert s.proc is not None
                    self._fail(s, f"server {s.server_id} died (exit code {s.proc.returncode})")
            if now >= until_s:
                return
            nxt = w.arrival_s[self.num_arrived] if self.num_arrived < n else math.inf
            wait = min(until_s, nxt) - now
            await asyncio.sleep(max(0.0, min(wait * self.time_scale, 0.05)))

    # ------------------------------------------------------------------ Backend protocol

    @property
    def now(self) -> float:
        return self._now

    def advance(self, until_s: float) -> WindowReport:
        self.run(until_s)
        held = list(self.queue_lengths())
        for s in self.servers:
            for idx in s.in_flight:
                held[int(self.workload.klass[idx])] += 1
        pools = {
            name: self.fleet.pool_report(pool, self._caps.get(pool, 0))
            for pool, name in zip(POOLS, POOL_NAMES, strict=True)
        }
        return self.ledger.close_window(
            until_s, held, self.queue_lengths(), pools, self.gpu_seconds()
        )

    def run(self, until_s: float) -> None:
        assert self._loop is not None, "call reset(seed) first"
        self._loop.run_until_complete(self._run(until_s))
        ready = [s for s in self.servers if s.state in (ServerState.READY, ServerState.DRAINING)]
        if ready:
            self._loop.run_until_complete(self._poll_all(ready))
        self._now = until_s

    def instance_stats(self) -> list[InstanceStats]:
        out: list[InstanceStats] = []
        for s in self.servers:
            if s.state not in (ServerState.READY, ServerState.DRAINING):
                continue
            interactive = sum(
                1 for idx in s.in_flight if self.workload.klass[idx] == RequestClass.INTERACTIVE
            )
            cap = self._caps.get(s.pool, 1) if s.cap is None else s.cap
            out.append(s.stats(cap, interactive, self.time_scale))
        return out

    def _max_cap(self, pool: Pool) -> int:
        """The largest batch cap in ``pool``: the servers' ``max_num_seqs`` when this backend
        starts them, else (adopted endpoints) the pool's ``instance.max_batch_cap``."""
        return self.cfg.max_num_seqs if self.cfg else self._specs[pool].instance.max_batch_cap

    def set_instance_cap(self, instance_id: int, cap: int) -> None:
        for s in self.servers:
            if s.server_id == instance_id:
                s.cap = max(1, min(cap, self._max_cap(s.pool)))
        self._dispatch()

    def pool_state(self, pool: Pool) -> PoolState:
        spec = self._specs.get(pool)
        if spec is None:
            return ABSENT_STATE
        live = self.fleet.live(pool)
        return PoolState(
            starting=sum(s.state == ServerState.STARTING for s in live),
            ready=sum(s.state == ServerState.READY for s in live),
            draining=sum(s.state == ServerState.DRAINING for s in live),
            batch_cap=self._caps[pool],
            bounds=self._bounds[pool],
        )

    def scale(self, pool: Pool, delta: int) -> int:
        if pool not in self._specs:
            return 0
        if delta > 0:
            for _ in range(delta):
                self._watch(self.fleet.start(pool, self._now))
            return delta
        return -self.fleet.scale_down(pool, -delta, self._stop_clock)

    def set_batch_cap(self, pool: Pool, cap: int) -> None:
        if pool in self._specs:
            self._caps[pool] = max(1, min(cap, self._max_cap(pool)))
            for s in self.servers:
                if s.pool == pool:
                    s.cap = None

    def queue_lengths(self) -> tuple[int, int]:
        return (len(self.queues[0]), len(self.queues[1]))

    def batch_groups(self) -> list[tuple[float, int]]:
        deadlines = (deadline for deadline, _ in self.queues[1])
        return deadline_groups(deadlines, self.scenario.cluster.group_granularity_s)

    def output_length_stats(self, klass: int) -> tuple[float, float, int]:
        return self.ledger.output_length_stats(klass)

    def gpus_in_use(self) -> int:
        return sum(
            self._specs[s.pool].instance.gpus
            for s in self.servers
            if s.state <= ServerState.DRAINING
        )

    def summary(self, latencies: bool = True) -> dict[str, ClassReport]:
        # no overdue count: an in-flight request's first token is recorded only when it ends
        return self.ledger.summary(
            self.queue_lengths(),
            overdue_at_s=None,
            latencies=latencies,
            latency_scale=self.time_scale,
        )

    def gpu_seconds(self) -> float:
        gpus = {pool: spec.instance.gpus for pool, spec in self._specs.items()}
        spans = ((s.requested_s, s.stopped_s, gpus[s.pool]) for s in self.servers)
        return gpu_seconds(spans, self._now)

    def priced_gpu_seconds(self) -> float:
        gpus = {p: spec.instance.gpus * spec.gpu_price for p, spec in self._specs.items()}
        spans = ((s.requested_s, s.stopped_s, gpus[s.pool]) for s in self.servers)
        return gpu_seconds(spans, self._now)

    def capacity_events(self) -> dict[Pool, tuple[int, int, int, int]]:
        """Servers that failed (died, or not healthy after start-up), per pool; no spot here."""
        out: dict[Pool, tuple[int, int, int, int]] = {}
        for s in self.fleet.servers:
            if s.state == ServerState.FAILED:
                n = out.get(s.pool, (0, 0, 0, 0))[0]
                out[s.pool] = (n + 1, 0, 0, 0)
        return out

    def drain_events(self) -> list[str]:
        """Fault and lifecycle events since the last call (the env puts them in ``info``)."""
        return self.fleet.drain_events()
