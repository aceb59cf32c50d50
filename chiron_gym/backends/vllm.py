"""The real backend: the Backend protocol over vLLM OpenAI-compatible servers, on wall-clock time.

- **Servers** are processes started from an argv template (no shell), or adopted endpoints.
  Scaling up starts one and counts it as starting until ``GET /health`` answers 200 (a real,
  measured cold start). Scaling down cancels starting servers first, then drains the least busy
  ready ones (no new requests; terminated when their requests are done).
- **Routing** (a router in front of unmodified vLLM, as QLM does): a request goes to an instance
  of its own pool, then to a mixed one, only while that instance's in-flight count is under its
  cap (the run-time batch size, the local level of the action); otherwise it waits in a global
  queue per class (interactive FCFS, batch earliest deadline first).
- **Replay**: the scenario's requests at ``time_scale`` wall seconds per scenario second; the
  prompt is a list of token ids of exactly the requested length, ``max_tokens`` = output tokens
  and ``ignore_eos``; each response is streamed to measure TTFT and ITL on the client side.
- **Observations** come from each server's ``/metrics`` (``prometheus_client``'s parser):
  running, waiting, KV usage, generated tokens, preemptions.
- **Faults**: a server whose process exits or that stops answering is marked failed and reported
  (``drain_events``); its in-flight requests are retried elsewhere once, then recorded as rejected
  with the reason. Every arrived request ends met, late, rejected or pending.

Latencies are compared with the scenario's SLOs as measured (not time-scaled); GPU-seconds are
instance-seconds of scenario time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.backends.base import PoolState
from chiron_gym.openai_stream import PROMPT_ALPHABET, prompt_ids, sse_chunks
from chiron_gym.scenario import Scenario
from chiron_gym.sim import ClassReport, InstanceStats, Outcome, Pool, RequestClass, WindowReport
from chiron_gym.sim.report import PoolReport, percentiles
from chiron_gym.sim.request import CLASS_NAMES, POOL_NAMES, RejectReason

DEFAULT_ARGV = (
    "{python}",
    "-m",
    "vllm.entrypoints.openai.api_server",
    "--model",
    "{model}",
    "--served-model-name",
    "{served_name}",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--max-num-seqs",
    "{max_num_seqs}",
    "--max-model-len",
    "{max_model_len}",
    "--dtype",
    "float32",
    "--enforce-eager",
)


class ServerState(IntEnum):
    STARTING = 0
    READY = 1
    DRAINING = 2
    STOPPED = 3
    FAILED = 4


@dataclass
class ServerConfig:
    """How to start a vLLM server (``argv`` fields are formatted; no shell is involved)."""

    model: str
    python: str = ".venv-vllm/bin/python"
    argv: tuple[str, ...] = DEFAULT_ARGV
    served_name: str = "tiny"
    max_num_seqs: int = 32
    max_model_len: int = 1024
    env: dict[str, str] = field(
        default_factory=lambda: {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    )
    port_base: int = 8100
    startup_timeout_s: float = 600.0
    log_dir: str | None = None
    token_id: int = 5  # prompts are ids from here (``prompt_ids``): exact lengths, no tokenizer

    def command(self, port: int) -> list[str]:
        values = {
            "python": self.python,
            "model": self.model,
            "served_name": self.served_name,
            "port": str(port),
            "max_num_seqs": str(self.max_num_seqs),
            "max_model_len": str(self.max_model_len),
        }
        return [a.format(**values) for a in self.argv]


@dataclass
class Server:
    """One instance: a process we started, or an adopted endpoint."""

    server_id: int
    pool: Pool
    url: str
    proc: subprocess.Popen[bytes] | None
    state: ServerState
    requested_s: float  # scenario time of the scale-up
    ready_s: float = math.nan
    stopped_s: float = math.nan
    in_flight: set[int] = field(default_factory=set)
    max_in_flight: int = 0
    cap: int | None = None  # this server's own cap (per-instance control), else the pool's
    metrics: dict[str, float] = field(default_factory=dict)
    tokens_before: float = 0.0
    preemptions_before: float = 0.0
    failures: int = 0

    @property
    def cold_start_s(self) -> float:
        return self.ready_s - self.requested_s


@dataclass
class _Window:
    arrived: list[int] = field(default_factory=lambda: [0, 0])
    met: list[int] = field(default_factory=lambda: [0, 0])
    late: list[int] = field(default_factory=lambda: [0, 0])
    rejected: list[int] = field(default_factory=lambda: [0, 0])
    met_tokens: list[int] = field(default_factory=lambda: [0, 0])
    ttft: list[list[float]] = field(default_factory=lambda: [[], []])
    itl: list[list[float]] = field(default_factory=lambda: [[], []])


def parse_metrics(text: str) -> dict[str, float]:
    """The vLLM gauges and counters we observe, summed over label sets."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        "vllm:num_requests_running": "running",
        "vllm:num_requests_waiting": "waiting",
        "vllm:kv_cache_usage_perc": "kv_usage",
        "vllm:gpu_cache_usage_perc": "kv_usage",
        "vllm:generation_tokens": "generation_tokens",
        "vllm:num_preemptions": "preemptions",
    }
    # Histograms: their _sum and _count (seconds between two tokens of a request, summed).
    histograms = {
        "vllm:inter_token_latency_seconds": "itl",
        "vllm:time_per_output_token_seconds": "itl",
        "vllm:time_to_first_token_seconds": "ttft",
    }
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        hist = histograms.get(fam.name)
        if hist is not None:
            for s in fam.samples:
                for suffix in ("_sum", "_count"):
                    if s.name.endswith(suffix):
                        hkey = hist + suffix
                        out[hkey] = out.get(hkey, 0.0) + float(s.value)
            continue
        key = wanted.get(fam.name)
        if key is None:
            continue
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[key] = out.get(key, 0.0) + float(s.value)
    return out


class VllmBackend:
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self.servers: list[Server] = []
        self._events: list[str] = []
        self._next_port = server.port_base if server else 0

    # ------------------------------------------------------------------ lifecycle

    def reset(self, seed: int) -> None:
        self.close()
        self._loop = asyncio.new_event_loop()
        self.workload = self.scenario.workload(seed)
        n = len(self.workload)
        self.outcome = np.full(n, Outcome.PENDING, dtype=np.int8)
        self.reason = np.zeros(n, dtype=np.int8)
        self.fail_reason: dict[int, str] = {}
        self.first_token_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.retries = np.zeros(n, dtype=np.int8)
        self.num_arrived = 0
        self.queues: tuple[deque[int], list[tuple[float, int]]] = (deque(), [])
        self._window = _Window()
        self._caps = {p: s.initial_batch_cap for p, s in self._specs.items()}
        self._t0_wall = time.monotonic()
        self._now = 0.0
        self._window_t0 = 0.0
        # prompts differ from those of earlier episodes on the same servers (prefix cache)
        self._salt = time.time_ns() // 1000 % PROMPT_ALPHABET**4
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gpu_s_before = 0.0
        self.servers = []
        self._events = []
        import httpx

        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.request_timeout_s, connect=5.0))
        for pool, spec in self._specs.items():
            urls = self.endpoints.get(pool.name.lower(), [])
            for url in urls:
                self._adopt(pool, url)
            for _ in range(max(0, spec.initial_instances - len(urls))):
                self._start(pool)
        # The initial pools are up when the episode starts, as in the simulator: wait for them
        # (their cold start is not part of the episode), then start the clock.
        self._loop.run_until_complete(self._until_initial_ready())
        for s in self.servers:
            s.requested_s = s.ready_s = 0.0
        self._t0_wall = time.monotonic()
        self._now = 0.0
        self._window_t0 = 0.0

    async def _until_initial_ready(self) -> None:
        while any(s.state == ServerState.STARTING for s in self.servers):
            await asyncio.sleep(0.2)
        failed = [s for s in self.servers if s.state == ServerState.FAILED]
        if failed:
            raise RuntimeError(f"initial servers failed to start: {self.drain_events()}")

    def close(self) -> None:
        for s in self.servers:
            self._terminate(s)
        if self._loop is not None:
            loop = self._loop
            for t in list(getattr(self, "_tasks", ())):
                t.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(self._http.aclose())
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

    def _adopt(self, pool: Pool, url: str) -> Server:
        s = Server(len(self.servers), pool, url.rstrip("/"), None, ServerState.STARTING, self._now)
        self.servers.append(s)
        self._spawn(self._wait_ready(s))
        return s

    def _start(self, pool: Pool) -> Server:
        cfg = self.cfg
        if cfg is None:
            raise RuntimeError("no ServerConfig: this backend only adopts endpoints")
        port = self._next_port
        self._next_port += 1
        env = {**os.environ, **cfg.env}
        log: Any = subprocess.DEVNULL
        if cfg.log_dir:
            Path(cfg.log_dir).mkdir(parents=True, exist_ok=True)
            log = open(Path(cfg.log_dir) / f"server-{port}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            cfg.command(port), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if log is not subprocess.DEVNULL:
            log.close()  # the child keeps its own descriptor
        s = Server(
            len(self.servers),
            pool,
            f"http://127.0.0.1:{port}",
            proc,
            ServerState.STARTING,
            self._now,
        )
        self.servers.append(s)
        self._events.append(f"server {s.server_id} ({pool.name.lower()}) starting on port {port}")
        self._spawn(self._wait_ready(s))
        return s

    async def _wait_ready(self, s: Server) -> None:
        deadline = time.monotonic() + (self.cfg.startup_timeout_s if self.cfg else 600.0)
        while s.state == ServerState.STARTING:
            if s.proc is not None and s.proc.poll() is not None:
                self._fail(
                    s, f"server {s.server_id} exited during start-up (code {s.proc.returncode})"
                )
                return
            try:
                r = await self._http.get(f"{s.url}/health", timeout=2.0)
                if r.status_code == 200:
                    s.state = ServerState.READY
                    s.ready_s = self._clock()
                    self._events.append(
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
        if s.proc is not None and s.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.proc.pid, signal.SIGTERM)
            try:
                s.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(s.proc.pid, signal.SIGKILL)
                s.proc.wait(timeout=15)
        if s.state not in (ServerState.STOPPED, ServerState.FAILED):
            s.state = ServerState.STOPPED
            s.stopped_s = self._clock() if self._loop is not None else self._now

    def _fail(self, s: Server, why: str) -> None:
        if s.state in (ServerState.STOPPED, ServerState.FAILED):
            return
        s.state = ServerState.FAILED
        s.stopped_s = self._clock()
        self._events.append(why)
        for idx in list(s.in_flight):
            self._requeue_or_reject(idx, f"server {s.server_id} failed")
        s.in_flight.clear()
        if s.proc is not None and s.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.proc.pid, signal.SIGKILL)

    def _live(self, pool: Pool) -> list[Server]:
        return [s for s in self.servers if s.pool == pool and s.state <= ServerState.DRAINING]

    # ------------------------------------------------------------------ requests

    def _clock(self) -> float:
        return (time.monotonic() - self._t0_wall) / self.time_scale

    def _arrive(self, idx: int) -> None:
        c = int(self.workload.klass[idx])
        self._window.arrived[c] += 1
        if c == RequestClass.INTERACTIVE:
            self.queues[0].append(idx)
        else:
            import heapq

            heapq.heappush(self.queues[1], (float(self.workload.deadline_s[idx]), idx))

    def _requeue_or_reject(self, idx: int, why: str) -> None:
        if self.retries[idx] < self.max_retries:
            self.retries[idx] += 1
            c = int(self.workload.klass[idx])
            if c == RequestClass.INTERACTIVE:
                self.queues[0].appendleft(idx)
            else:
                import heapq

                heapq.heappush(self.queues[1], (float(self.workload.deadline_s[idx]), idx))
            return
        self._decide(idx, Outcome.REJECTED, why)

    def _decide(self, idx: int, outcome: Outcome, why: str = "") -> None:
        if self.outcome[idx] != Outcome.PENDING:
            return
        self.outcome[idx] = outcome
        c = int(self.workload.klass[idx])
        if outcome == Outcome.MET:
            self._window.met[c] += 1
            self._window.met_tokens[c] += int(self.workload.output_tokens[idx])
        elif outcome == Outcome.LATE:
            self._window.late[c] += 1
        else:
            self._window.rejected[c] += 1
            self.reason[idx] = RejectReason.NO_POOL
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
        import heapq

        for c in (RequestClass.INTERACTIVE, RequestClass.BATCH):
            while self.queues[c]:
                targets = self._targets(c)
                if not targets:
                    break
                if c == RequestClass.INTERACTIVE:
                    idx = self.queues[0].popleft()
                else:
                    idx = heapq.heappop(self.queues[1])[1]
                s = targets[0]
                s.in_flight.add(idx)
                s.max_in_flight = max(s.max_in_flight, len(s.in_flight))
                self._spawn(self._send(s, idx))

    async def _send(self, s: Server, idx: int) -> None:
        assert self.cfg is not None or self.endpoints
        w = self.workload
        body = {
            "model": self.cfg.served_name if self.cfg else "tiny",
            "prompt": prompt_ids(
                self._salt + idx + int(self.retries[idx]) * len(w),  # distinct, retries too
                int(w.prompt_tokens[idx]),
                self.cfg.token_id if self.cfg else 5,
            ),
            "max_tokens": int(w.output_tokens[idx]),
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
        }
        t_first = math.nan
        t_last = math.nan
        try:
            async with self._http.stream("POST", f"{s.url}/v1/completions", json=body) as resp:
                if resp.status_code != 200:
                    raise RuntimeError(f"HTTP {resp.status_code}")
                async for chunk in sse_chunks(resp):
                    if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                        now = self._clock()
                        if math.isnan(t_first):
                            t_first = now
                        t_last = now
        except Exception as e:
            s.in_flight.discard(idx)
            alive = s.proc is None or s.proc.poll() is None
            if not alive:
                self._fail(
                    s,
                    f"server {s.server_id} died (exit code {s.proc.returncode if s.proc else '?'})",
                )
            else:
                self._events.append(f"request {idx} on server {s.server_id} failed: {e!r}")
                self._requeue_or_reject(idx, f"request failed on server {s.server_id}: {e!r}")
            self._dispatch()
            return
        s.in_flight.discard(idx)
        arrival = float(w.arrival_s[idx])
        self.first_token_s[idx] = t_first
        self.finish_s[idx] = t_last
        c = int(w.klass[idx])
        ttft = (t_first - arrival) * self.time_scale  # measured latency, wall seconds
        # per output token (a chunk may carry several tokens when the client falls behind)
        itl = (t_last - t_first) * self.time_scale / max(1, int(w.output_tokens[idx]) - 1)
        self._window.ttft[c].append(ttft)
        self._window.itl[c].append(itl)
        slo = self.scenario.cluster.slo(c)
        ok = True
        if c == RequestClass.INTERACTIVE:
            ok = (slo.ttft_s is None or ttft <= slo.ttft_s) and (
                slo.itl_s is None or itl <= slo.itl_s
            )
        else:
            ok = t_last <= float(w.deadline_s[idx])
        self._decide(idx, Outcome.MET if ok else Outcome.LATE)
        if s.state == ServerState.DRAINING and not s.in_flight:
            self._terminate(s)
        self._dispatch()

    async def _poll_metrics(self, s: Server) -> None:
        try:
            r = await self._http.get(f"{s.url}/metrics", timeout=5.0)
            s.metrics = parse_metrics(r.text)
            s.failures = 0
        except Exception:
            s.failures += 1
            dead = s.proc is not None and s.proc.poll() is not None
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
                self.num_arrived += 1
            self._dispatch()
            for s in self.servers:
                if (
                    s.proc is not None
                    and s.proc.poll() is not None
                    and s.state <= ServerState.DRAINING
                ):
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
        t0 = self._window_t0
        self.run(until_s)
        self._window_t0 = until_s
        return self._report(t0, until_s)

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
            m = s.metrics
            interactive = sum(
                1 for idx in s.in_flight if self.workload.klass[idx] == RequestClass.INTERACTIVE
            )
            out.append(
                InstanceStats(
                    instance_id=s.server_id,
                    pool=int(s.pool),
                    ready=s.state == ServerState.READY,
                    batch_cap=self._caps.get(s.pool, 1) if s.cap is None else s.cap,
                    running=int(m.get("running", 0)),
                    waiting=int(m.get("waiting", 0)),
                    interactive_held=interactive,
                    tokens_generated=int(m.get("generation_tokens", 0)),
                    first_tokens=int(m.get("ttft_count", 0)),
                    ttft_sum_s=float(m.get("ttft_sum", 0.0)) / self.time_scale,
                    decode_tokens=int(m.get("itl_count", 0)),
                    decode_token_time_s=float(m.get("itl_sum", 0.0)) / self.time_scale,
                )
            )
        return out

    def set_instance_cap(self, instance_id: int, cap: int) -> None:
        max_cap = self.cfg.max_num_seqs if self.cfg else cap
        for s in self.servers:
            if s.server_id == instance_id:
                s.cap = max(1, min(cap, max_cap))
        self._dispatch()

    def _report(self, t0: float, t1: float) -> WindowReport:
        w = self._window
        classes: dict[str, ClassReport] = {}
        held = [len(self.queues[0]), len(self.queues[1])]
        for s in self.servers:
            for idx in s.in_flight:
                held[int(self.workload.klass[idx])] += 1
        for c, name in enumerate(CLASS_NAMES):
            classes[name] = ClassReport(
                arrived=w.arrived[c],
                met=w.met[c],
                late=w.late[c],
                rejected=w.rejected[c],
                pending=held[c],
                queued=len(self.queues[c]),
                met_output_tokens=w.met_tokens[c],
                ttft_s=percentiles(w.ttft[c]),
                itl_s=percentiles(w.itl[c]),
            )
        pools: dict[str, PoolReport] = {}
        for pool, name in zip(Pool, POOL_NAMES, strict=True):
            rep = PoolReport()
            kv: list[float] = []
            for s in self.servers:
                if s.pool != pool:
                    continue
                if s.state == ServerState.STARTING:
                    rep.starting += 1
                elif s.state in (ServerState.READY, ServerState.DRAINING):
                    if s.state == ServerState.READY:
                        rep.ready += 1
                    else:
                        rep.draining += 1
                    m = s.metrics
                    rep.running += int(m.get("running", 0))
                    rep.waiting += int(m.get("waiting", 0))
                    kv.append(m.get("kv_usage", 0.0))
                    tok = m.get("generation_tokens", 0.0)
                    rep.tokens_generated += int(tok - s.tokens_before)
                    s.tokens_before = tok
                    pre = m.get("preemptions", 0.0)
                    rep.preemptions += int(pre - s.preemptions_before)
                    s.preemptions_before = pre
            rep.kv_usage = float(np.mean(kv)) if kv else 0.0
            rep.batch_cap = float(self._caps.get(pool, 0))
            pools[name] = rep
        total = self.gpu_seconds()
        gpu = total - self._gpu_s_before
        self._gpu_s_before = total
        self._window = _Window()
        return WindowReport(t0, t1, classes, pools, gpu)

    def pool_state(self, pool: Pool) -> PoolState:
        spec = self._specs.get(pool)
        if spec is None:
            return PoolState(False, 0, 0, 0, 0, 1, 1, 0, 0)
        live = self._live(pool)
        max_cap = self.cfg.max_num_seqs if self.cfg else spec.instance.max_batch_cap
        return PoolState(
            exists=True,
            starting=sum(s.state == ServerState.STARTING for s in live),
            ready=sum(s.state == ServerState.READY for s in live),
            draining=sum(s.state == ServerState.DRAINING for s in live),
            batch_cap=self._caps[pool],
            max_batch_cap=max_cap,
            gpus_per_instance=spec.instance.gpus,
            min_instances=spec.min_instances,
            max_instances=spec.max_instances,
        )

    def scale(self, pool: Pool, delta: int) -> int:
        if pool not in self._specs:
            return 0
        if delta > 0:
            for _ in range(delta):
                self._start(pool)
            return delta
        removed = 0
        live = self._live(pool)
        for s in reversed([s for s in live if s.state == ServerState.STARTING]):
            if removed == -delta:
                return -removed
            self._terminate(s)
            self._events.append(f"server {s.server_id} cancelled while starting")
            removed += 1
        for s in sorted(
            (s for s in live if s.state == ServerState.READY),
            key=lambda s: (len(s.in_flight), -s.server_id),
        ):
            if removed == -delta:
                break
            s.state = ServerState.DRAINING
            self._events.append(f"server {s.server_id} draining ({len(s.in_flight)} in flight)")
            if not s.in_flight:
                self._terminate(s)
            removed += 1
        return -removed

    def set_batch_cap(self, pool: Pool, cap: int) -> None:
        if pool in self._specs:
            max_cap = self.cfg.max_num_seqs if self.cfg else cap
            self._caps[pool] = max(1, min(cap, max_cap))
            for s in self.servers:
                if s.pool == pool:
                    s.cap = None

    def queue_lengths(self) -> tuple[int, int]:
        return (len(self.queues[0]), len(self.queues[1]))

    def batch_groups(self) -> list[tuple[float, int]]:
        g = self.scenario.cluster.group_granularity_s
        groups: dict[int, int] = {}
        for deadline, _ in self.queues[1]:
            k = math.floor(deadline / g)
            groups[k] = groups.get(k, 0) + 1
        return [(k * g, n) for k, n in sorted(groups.items())]

    def output_length_stats(self, klass: int) -> tuple[float, float, int]:
        n = self.num_arrived
        done = (self.workload.klass[:n] == klass) & ~np.isnan(self.finish_s[:n])
        out = self.workload.output_tokens[:n][done]
        if len(out) == 0:
            return (math.nan, math.nan, 0)
        return (float(out.mean()), float(out.std()), len(out))

    def gpus_in_use(self) -> int:
        return sum(
            self._specs[s.pool].instance.gpus
            for s in self.servers
            if s.state <= ServerState.DRAINING
        )

    def summary(self) -> dict[str, ClassReport]:
        n = self.num_arrived
        out: dict[str, ClassReport] = {}
        for c, name in enumerate(CLASS_NAMES):
            sel = self.workload.klass[:n] == c
            oc = self.outcome[:n][sel]
            out[name] = ClassReport(
                arrived=int(sel.sum()),
                met=int(np.sum(oc == Outcome.MET)),
                late=int(np.sum(oc == Outcome.LATE)),
                rejected=int(np.sum(oc == Outcome.REJECTED)),
                pending=int(np.sum(oc == Outcome.PENDING)),
                queued=len(self.queues[c]),
            )
        return out

    def gpu_seconds(self) -> float:
        total = 0.0
        for s in self.servers:
            end = self._now if math.isnan(s.stopped_s) else min(s.stopped_s, self._now)
            total += max(0.0, end - s.requested_s) * self._specs[s.pool].instance.gpus
        return total

    def drain_events(self) -> list[str]:
        """Fault and lifecycle events since the last call (the env puts them in ``info``)."""
        out, self._events = self._events, []
        return out
