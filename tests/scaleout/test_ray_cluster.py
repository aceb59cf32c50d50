"""An existing Ray cluster given by address: `ray start --head`, then `chiron ... --ray-address`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from agents.run.evaluate import evaluate
from tests.scaleout.conftest import QUIET, require_ray

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_evaluate_on_an_existing_cluster_by_address(tmp_path: Path) -> None:
    """A head started apart from chiron (as on a real cluster); the grid runs there, same CSV."""
    require_ray()
    port = _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    log = (tmp_path / "head.log").open("w")
    start = ["start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    head = subprocess.Popen(
        [str(BIN / "ray"), *start, "--block"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:  # the head is up when `ray status` answers
            status = subprocess.run(
                [str(BIN / "ray"), "status", f"--address={address}"],
                env=env,
                capture_output=True,
                text=True,
            )
            if status.returncode == 0:
                break
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, status.stderr[-2000:]
            time.sleep(2)
        out = tmp_path / "remote"
        args = ["evaluate", "--agents", "chiron,static", "--scenarios", "default"]
        args += ["--seeds", "0-1", "--out", str(out), "--no-plots", "--no-tensorboard", "--json"]
        run = subprocess.run(
            [str(BIN / "chiron"), *args, "--executor", "ray", "--ray-address", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        assert "Connected to Ray cluster" in run.stderr  # joined the head, did not start a Ray
    finally:
        head.terminate()  # `ray start --block` stops the head's processes on SIGTERM
        head.wait(timeout=60)
        log.close()
    local = tmp_path / "local"
    evaluate(
        ["chiron", "static"],
        ["default"],
        [0, 1],
        local,
        **QUIET,
        executor="local",
    )
    assert (out / "results.csv").read_bytes() == (local / "results.csv").read_bytes()
