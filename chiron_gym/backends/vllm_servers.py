"""vLLM server processes of the real backend: launching, state, ports, stopping, scaling down.

A server is a process started from an argv template (no shell), on its own port, in its own
session (so that stopping it stops its workers too), or an adopted endpoint we did not start. It
counts as starting until ``GET /health`` answers 200 (a real, measured cold start). Scaling down
cancels starting servers first, then drains the least busy ready ones (no new requests;
terminated when their requests are done). Nothing here speaks HTTP: the backend asks
``/health`` and ``/metrics`` through the client (``backends/vllm_client.py``) and keeps what
``/metrics`` said in ``Server.metrics``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.sim import InstanceStats, Pool
from chiron_gym.sim.report import PoolReport

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


def free_port(start: int, host: str = "127.0.0.1", tries: int = 1000) -> int:
    """The first port from ``start`` that a server can bind on ``host``: one another process
    listens on is skipped. A server launched on a taken port exits, and until it does, the
    process already there answers its ``/health`` and would be taken for it (two test suites
    on one host did exactly that). Probed as vLLM binds (``SO_REUSEADDR``, so a port whose
    last connections are closing still counts as free)."""
    for port in range(start, min(start + tries, 65536)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {host} in {start}-{min(start + tries, 65536) - 1}")


def launch(cfg: ServerConfig, port: int) -> subprocess.Popen[bytes]:
    """Start a server process on ``port`` in a session of its own (log to ``cfg.log_dir``)."""
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
    return proc


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

    @property
    def exited(self) -> bool:
        """Whether its process (if we started one) has exited."""
        return self.proc is not None and self.proc.poll() is not None

    def stop_process(self) -> None:
        """Stop its process, if any and still running: SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    def kill_process(self) -> None:
        """SIGKILL its process, if any and still running (a failed server)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stats(self, batch_cap: int, interactive_held: int, time_scale: float) -> InstanceStats:
        """Its state and cumulative counters, from its last ``/metrics``."""
        m = self.metrics
        return InstanceStats(
            instance_id=self.server_id,
            pool=int(self.pool),
            ready=self.state == ServerState.READY,
            batch_cap=batch_cap,
            running=int(m.get("running", 0)),
            waiting=int(m.get("waiting", 0)),
            interactive_held=interactive_held,
            tokens_generated=int(m.get("generation_tokens", 0)),
            first_tokens=int(m.get("ttft_count", 0)),
            ttft_sum_s=float(m.get("ttft_sum", 0.0)) / time_scale,
            decode_tokens=int(m.get("itl_count", 0)),
            decode_token_time_s=float(m.get("itl_sum", 0.0)) / time_scale,
        )


class Fleet:
    """The servers of an episode, and their lifecycle events; ports count on across episodes."""

    def __init__(self, cfg: ServerConfig | None) -> None:
        self.cfg = cfg
        self.servers: list[Server] = []
        self.events: list[str] = []
        self._next_port = cfg.port_base if cfg else 0

    def clear(self) -> None:
        """Forget the servers and events of the previous episode (stop its servers first)."""
        self.servers = []
        self.events = []

    def adopt(self, pool: Pool, url: str, now_s: float) -> Server:
        """An endpoint we did not start, starting until it answers ``/health``."""
        s = Server(len(self.servers), pool, url.rstrip("/"), None, ServerState.STARTING, now_s)
        self.servers.append(s)
        return s

    def start(self, pool: Pool, now_s: float) -> Server:
        """Launch a server on the next free port; it is starting until it answers ``/health``."""
        cfg = self.cfg
        if cfg is None:
            raise RuntimeError("no ServerConfig: this backend only adopts endpoints")
        port = free_port(self._next_port)
        self._next_port = port + 1
        proc = launch(cfg, port)
        s = Server(
            len(self.servers),
            pool,
            f"http://127.0.0.1:{port}",
            proc,
            ServerState.STARTING,
            now_s,
        )
        self.servers.append(s)
        self.events.append(f"server {s.server_id} ({pool.name.lower()}) starting on port {port}")
        return s

    def stop(self, s: Server, clock: Callable[[], float]) -> None:
        """Stop a server's process; a live one is stopped as of ``clock()`` once it has exited."""
        s.stop_process()
        if s.state not in (ServerState.STOPPED, ServerState.FAILED):
            s.state = ServerState.STOPPED
            s.stopped_s = clock()

    def live(self, pool: Pool) -> list[Server]:
        """A pool's servers that are starting, ready or draining."""
        return [s for s in self.servers if s.pool == pool and s.state <= ServerState.DRAINING]

    def scale_down(self, pool: Pool, n: int, clock: Callable[[], float]) -> int:
        """Cancel starting servers (newest first), then drain the least busy ready ones (stopped
        when their requests are done), ``n`` in all at most; return how many."""
        removed = 0
        live = self.live(pool)
        for s in reversed([s for s in live if s.state == ServerState.STARTING]):
            if removed == n:
                return removed
            self.stop(s, clock)
            self.events.append(f"server {s.server_id} cancelled while starting")
            removed += 1
        for s in sorted(
            (s for s in live if s.state == ServerState.READY),
            key=lambda s: (len(s.in_flight), -s.server_id),
        ):
            if removed == n:
                break
            s.state = ServerState.DRAINING
            self.events.append(f"server {s.server_id} draining ({len(s.in_flight)} in flight)")
            if not s.in_flight:
                self.stop(s, clock)
            removed += 1
        return removed

    def pool_report(self, pool: Pool, batch_cap: int) -> PoolReport:
        """A pool's servers now, from their last ``/metrics`` (counters since the last report)."""
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
        rep.batch_cap = float(batch_cap)
        return rep

    def drain_events(self) -> list[str]:
        """Lifecycle and fault events since the last call."""
        out, self.events = self.events, []
        return out
