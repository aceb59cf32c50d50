"""The instrument checked: the real backend's client against a minimal independent client.

The same requests (arrival times, prompt and output lengths, at most 8 in flight) are replayed
on one vLLM server by the real backend (as ``chiron fidelity`` replays them) and, at the same
time and on the same clock, by two copies of ``reference_client.py`` (aiohttp, each its own
process). All three see the same server in the same state, so what differs is the instrument.

What is asserted does not depend on how busy the host is: the backend's ITL and end-to-end
medians must sit within 10% of the references' mean, or within twice the distance between the
two references when the host makes that larger. Two copies of one independent client measure
what the host's noise is during this very replay; a bias of the backend's own (the defect
below: ITL 30 times too small) is far outside it.

Before issue 22 the backend's client (httpx, every chunk decoded as JSON) fell behind the
stream on this kind of host: whole responses read in one burst, ITL p50 0.1 ms against 3 ms,
TTFT p50 385 ms against 20 ms (docs/real-backend.md, "The client"). Replays one after the other
were tried first: the host's own drift between two identical runs of one client (e2e p50 from
260 to 400 ms) is larger than the 10% to be checked, so the replays run side by side.
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
# Below this, two medians are the same reading: a starved host delivers whole streams in bursts,
# so every client's ITL median is ~0 and a relative bound would divide by it. The defect this
# test is for (ITL 0.1 ms against 3 ms) is six times this far off.
FLOOR_S = 0.5e-3
REFERENCES = 2


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
    vllm_python: Path, tiny_model: Path, tmp_path: Path
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """One replay by the backend and two reference clients at once, on one fresh server (room
    for all three clients' requests): the backend's medians and each reference's."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    scenario = load(SCENARIO)
    w = scenario.workload(0)
    cap = scenario.cluster.pools[0].initial_batch_cap
    fixed = fixed_scenario(scenario, {"interactive": 1}, None)
    refs: list[subprocess.Popen[str]] = []
    outs = [tmp_path / f"reference-{k}.npz" for k in range(REFERENCES)]
    logs = tmp_path / "logs"
    with vllm_server(vllm_python, tiny_model, logs, max_num_seqs=3 * cap) as url:
        for k, out in enumerate(outs):
            src = tmp_path / f"requests-{k}.npz"
            np.savez(src, url=url, model=ServerConfig.served_name, arrival=w.arrival_s,
                     prompt=w.prompt_tokens, output=w.output_tokens, cap=cap, run=k)  # fmt: skip
            ref = subprocess.Popen(
                [sys.executable, "-m", "tests.real.reference_client", str(src), str(out)],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert ref.stdout is not None
            assert ref.stdout.readline().strip() == "ready"
            refs.append(ref)

        def start_beside(backend: Any) -> None:  # the references replay on the backend's clock
            for ref in refs:
                assert ref.stdin is not None
                ref.stdin.write(f"{backend.origin_monotonic}\n")
                ref.stdin.flush()

        run = run_real(fixed, 0, {"interactive": [url]}, drain_s=120.0, on_start=start_beside)
        assert all(ref.wait(timeout=180) == 0 for ref in refs)
    theirs = [np.load(out) for out in outs]
    a = medians(w.arrival_s, w.output_tokens, run.first_token_s, run.finish_s)
    b = [medians(w.arrival_s, w.output_tokens, t["first"], t["last"]) for t in theirs]
    return a, b


def within_the_noise(a: dict[str, float], refs: list[dict[str, float]]) -> dict[str, bool]:
    """Per median (ITL, e2e): whether the backend's is within ``TOLERANCE`` of the references'
    mean, or within twice the references' own distance from each other when that is larger, or
    within ``FLOOR_S`` of it."""
    ok = {}
    for m in ("itl", "e2e"):
        r1, r2 = refs[0][m], refs[1][m]
        mean = (r1 + r2) / 2
        ok[m] = abs(a[m] - mean) <= max(TOLERANCE * mean, 2 * abs(r1 - r2), FLOOR_S)
    return ok


def test_the_noise_bound_catches_the_defect_it_is_for() -> None:
    """The bound that scales with the host's noise still fails a biased instrument: the
    pre-issue-22 client (ITL 0.1 ms against 3 ms) beside references that agree to 20%."""
    refs = [{"itl": 3.0e-3, "e2e": 0.30}, {"itl": 3.6e-3, "e2e": 0.33}]
    assert within_the_noise({"itl": 3.3e-3, "e2e": 0.36}, refs) == {"itl": True, "e2e": True}
    assert within_the_noise({"itl": 0.1e-3, "e2e": 0.32}, refs) == {"itl": False, "e2e": True}
    assert within_the_noise({"itl": 3.3e-3, "e2e": 0.50}, refs) == {"itl": True, "e2e": False}
    # a starved host: every client reads whole streams at once (ITL medians ~0)
    starved = [{"itl": 0.0, "e2e": 3.83}, {"itl": 1e-5, "e2e": 4.38}]
    assert within_the_noise({"itl": 2e-5, "e2e": 4.60}, starved) == {"itl": True, "e2e": True}


def test_the_backend_measures_what_an_independent_client_sees(
    vllm_python: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """ITL and e2e medians within the references' noise (``within_the_noise``), in one of at
    most two replays: the second runs only if the first did not pass, so that a host that
    treated the backend's process worse than both references' for those 30 s does not fail the
    suite, while a bias of the instrument shows in both."""
    tables = []
    for attempt in range(2):
        a, refs = side_by_side(vllm_python, tiny_model, tmp_path / str(attempt))
        table = ", ".join(
            f"{m} p50 {1e3 * a[m]:.1f} / {1e3 * refs[0][m]:.1f} / {1e3 * refs[1][m]:.1f} ms"
            for m in a
        )
        print(f"backend / reference 1 / reference 2, replay {attempt + 1}: {table}")
        tables.append(table)
        if all(within_the_noise(a, refs).values()):
            return
    pytest.fail(f"the backend's medians are outside the references' noise twice: {tables}")
