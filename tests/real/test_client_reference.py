"""The instrument checked: the real backend's client against a minimal independent client.

The same requests (arrival times, prompt and output lengths, at most 8 in flight) are replayed
on one vLLM server by the real backend (as ``chiron fidelity`` replays them) and, at the same
time and on the same clock, by ``reference_client.py`` (aiohttp, its own process). Both see the
same server in the same state, so what differs is the instrument: the backend's per-request
inter-token latency and end-to-end latency medians must be within 10% of the reference's (in
one of at most two such replays: see the test's docstring).

Before issue 22 the backend's client (httpx, every chunk decoded as JSON) fell behind the
stream on this kind of host: whole responses read in one burst, ITL p50 0.1 ms against 3 ms,
TTFT p50 385 ms against 20 ms (docs/real-backend.md, "The client"). Replays one after the other
were tried first: the host's own drift between two identical runs of one client (e2e p50 from
260 to 400 ms) is larger than the 10% to be checked, so the two replays run side by side.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chiron_gym.backends.vllm_servers import ServerConfig
from chiron_gym.fidelity import fixed_scenario, run_real
from chiron_gym.scenario import load
from tests.conftest import REPO
from tests.real.conftest import vllm_server

SCENARIO = Path(__file__).with_name("real-client.toml")
pytestmark = pytest.mark.slow
TOLERANCE = 0.10


def medians(
    arrival: np.ndarray, output: np.ndarray, first: np.ndarray, last: np.ndarray
) -> dict[str, float]:
    assert not np.isnan(last).any(), f"{int(np.isnan(last).sum())} requests did not finish"
    multi = output > 1
    return {
        "ttft": float(np.median(first - arrival)),
        "itl": float(np.median((last[multi] - first[multi]) / (output[multi] - 1))),
        "e2e": float(np.median(last - arrival)),
    }


def side_by_side(
    vllm_python: Path, tiny_model: Path, tmp_path: Path, port: int
) -> tuple[dict[str, float], dict[str, float]]:
    """One replay by the backend and the reference client at once, on one fresh server: the
    backend's medians and the reference's."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    scenario = load(SCENARIO)
    w = scenario.workload(0)
    cap = scenario.cluster.pools[0].initial_batch_cap
    fixed = fixed_scenario(scenario, {"interactive": 1}, None)
    with vllm_server(vllm_python, tiny_model, port, tmp_path / "logs") as url:
        src, out = tmp_path / "requests.npz", tmp_path / "reference.npz"
        np.savez(src, url=url, model=ServerConfig.served_name, arrival=w.arrival_s,
                 prompt=w.prompt_tokens, output=w.output_tokens, cap=cap, run=0)  # fmt: skip
        ref = subprocess.Popen(
            [sys.executable, "-m", "tests.real.reference_client", str(src), str(out)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert ref.stdout is not None and ref.stdin is not None
        assert ref.stdout.readline().strip() == "ready"

        def start_beside(backend: Any) -> None:  # the reference replays on the backend's clock
            assert ref.stdin is not None
            ref.stdin.write(f"{backend.origin_monotonic}\n")
            ref.stdin.flush()

        run = run_real(fixed, 0, {"interactive": [url]}, drain_s=120.0, on_start=start_beside)
        assert ref.wait(timeout=180) == 0
    theirs = np.load(out)
    a = medians(w.arrival_s, w.output_tokens, run.first_token_s, run.finish_s)
    b = medians(w.arrival_s, w.output_tokens, theirs["first"], theirs["last"])
    return a, b


def test_the_backend_measures_what_an_independent_client_sees(
    vllm_python: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """Within 10% on ITL and e2e medians, in one of at most two side-by-side replays: a bias of
    the instrument shows in both; a host busy with something else during one replay (seen once
    in a full-suite run on 2 cores: TTFT twice its quiet value for both clients, the backend's
    ITL 13% above the reference's) does not fail the suite."""
    tables = []
    for attempt in range(2):
        a, b = side_by_side(vllm_python, tiny_model, tmp_path / str(attempt), 8700 + attempt)
        table = ", ".join(f"{m} p50 {1e3 * a[m]:.1f} / {1e3 * b[m]:.1f} ms" for m in a)
        print(f"backend / reference client, side by side (replay {attempt + 1}): {table}")
        tables.append(table)
        if all(abs(a[m] / b[m] - 1) <= TOLERANCE for m in ("itl", "e2e")):
            return
    pytest.fail(f"ITL or e2e medians differ by more than {TOLERANCE:.0%} in both replays: {tables}")
