"""The instrument checked: the real backend's client against a minimal independent client.

The same requests (arrival times, prompt and output lengths, cap on requests in flight) are
replayed on one vLLM server by the real backend (as ``chiron fidelity`` replays them) and by
``reference_client.py`` (aiohttp), alternately, twice each. What the backend measures must be
what an independent client sees: per-request inter-token latency and end-to-end latency medians
within 10% of the reference's. Before issue 22 the backend's client (httpx, every chunk decoded
as JSON) measured the same server 40-65% slower per token than a minimal client did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chiron_gym.backends.vllm_servers import ServerConfig
from chiron_gym.fidelity import fixed_scenario, run_real
from chiron_gym.scenario import load
from tests.real.conftest import vllm_server
from tests.real.reference_client import replay

SCENARIO = Path(__file__).with_name("real-client.toml")
pytestmark = pytest.mark.slow
TOLERANCE = 0.10


def _medians(
    arrival: np.ndarray, output: np.ndarray, runs: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, float]:
    first = np.concatenate([f for f, _ in runs])
    last = np.concatenate([x for _, x in runs])
    arr = np.concatenate([arrival] * len(runs))
    out = np.concatenate([output] * len(runs))
    assert not np.isnan(last).any(), "a request did not finish"
    multi = out > 1
    return {
        "ttft": float(np.median(first - arr)),
        "itl": float(np.median((last[multi] - first[multi]) / (out[multi] - 1))),
        "e2e": float(np.median(last - arr)),
    }


def test_the_backend_measures_what_an_independent_client_sees(
    vllm_python: Path, tiny_model: Path, tmp_path: Path
) -> None:
    scenario = load(SCENARIO)
    w = scenario.workload(0)
    cap = scenario.cluster.pools[0].initial_batch_cap
    fixed = fixed_scenario(scenario, {"interactive": 1}, None)
    ours: list[tuple[np.ndarray, np.ndarray]] = []
    theirs: list[tuple[np.ndarray, np.ndarray]] = []
    with vllm_server(vllm_python, tiny_model, 8700, tmp_path / "logs") as url:
        model = ServerConfig.served_name
        replay(url, model, w.arrival_s[:8] * 0.1, w.prompt_tokens[:8], w.output_tokens[:8], cap, 9)
        for k in range(2):  # alternately, so that a drift of the host falls on both
            theirs.append(replay(url, model, w.arrival_s, w.prompt_tokens, w.output_tokens, cap, k))
            run = run_real(fixed, 0, {"interactive": [url]}, drain_s=120.0)
            ours.append((run.first_token_s, run.finish_s))
    a = _medians(w.arrival_s, w.output_tokens, ours)
    b = _medians(w.arrival_s, w.output_tokens, theirs)
    table = ", ".join(f"{m} p50 {1e3 * a[m]:.1f} / {1e3 * b[m]:.1f} ms" for m in a)
    print(f"backend / reference client: {table}")
    for m in ("itl", "e2e"):
        assert abs(a[m] / b[m] - 1) <= TOLERANCE, f"{m}: {table}"
