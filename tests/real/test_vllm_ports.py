"""The real backend never takes another process's server for its own (no vLLM needed): a port
something listens on is skipped, and a server whose process exited is not made ready by the
answer of whatever holds its port. Two test suites on one host once shared a port this way: one
suite's requests went to the other's server, and failed when that suite stopped it."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from chiron_gym.backends import vllm_servers
from chiron_gym.backends.vllm import VllmBackend
from chiron_gym.backends.vllm_client import VllmClient
from chiron_gym.backends.vllm_servers import Fleet, ServerConfig, free_port
from chiron_gym.scenario import load
from chiron_gym.sim import Pool
from tests.fake_vllm import fake_server
from tests.real.conftest import os_port
from tests.real.test_vllm_accounting import SCENARIO


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process's server listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_free_port_skips_a_port_with_a_listener(taken: int) -> None:
    port = free_port(taken)
    assert port > taken
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # and the one it gives is free


def test_the_fleet_starts_its_server_past_a_taken_port(taken: int) -> None:
    cfg = ServerConfig(
        model="none",
        python=sys.executable,
        argv=("{python}", "-c", "import time; time.sleep(60)"),
        port_base=taken,
    )
    fleet = Fleet(cfg)
    s = fleet.start(Pool.INTERACTIVE, 0.0)
    try:
        assert urlparse(s.url).port == free_port(taken) != taken
        assert f"starting on port {urlparse(s.url).port}" in fleet.events[-1]
    finally:
        fleet.stop(s, lambda: 1.0)


def test_a_server_that_exited_is_not_made_ready_by_another_on_its_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the port check cannot close (the port taken between the check and the bind): our
    process exits while the other server answers ``/health`` for it. The start fails, with our
    process's exit code, instead of the other server being served as ours."""
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO.format(n=1))
    with fake_server(lambda s, p, o: "steady") as url:
        port = urlparse(url).port
        assert port is not None
        monkeypatch.setattr(vllm_servers, "free_port", lambda start: start)  # the race
        launched = []
        launch = vllm_servers.launch

        def record(cfg: ServerConfig, port: int) -> object:
            proc = launch(cfg, port)
            launched.append(proc)
            return proc

        monkeypatch.setattr(vllm_servers, "launch", record)
        healthy = VllmClient.healthy

        async def exits_meanwhile(self: VllmClient, u: str) -> bool:
            for proc in launched:  # the process dies (its bind refused) while /health answers
                proc.wait(timeout=30)
            return await healthy(self, u)

        monkeypatch.setattr(VllmClient, "healthy", exits_meanwhile)
        cfg = ServerConfig(
            model="none",
            python=sys.executable,
            argv=("{python}", "-c", "import sys; sys.exit(3)"),
            port_base=port,
            startup_timeout_s=30.0,
        )
        backend = VllmBackend(load(path), server=cfg)
        try:
            with pytest.raises(RuntimeError, match=r"exited during start-up \(code 3\)"):
                backend.reset(0)
        finally:
            backend.close()


def test_a_test_server_port_comes_from_the_os() -> None:
    a, b = os_port(), os_port()
    assert 1024 <= a <= 65535 and 1024 <= b <= 65535
