"""``Backend.replace_future``: the requests yet to arrive replaced (a forecast to plan on, in a
copy of the episode) while every arrived request keeps its row and its account."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym.backends.vllm import VllmBackend
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.sim import Workload

ROOT = Path(__file__).resolve().parents[2]
HORIZON_S = 600.0


def _play(env: AutoscaleEnv, steps: int) -> list[bytes]:
    hold = env.layout.join([0, 0, 0], None)
    out = []
    for _ in range(steps):
        obs, reward, *_ = env.step(hold)
        out.append(obs.tobytes() + np.float64(reward).tobytes())
    return out


@settings(max_examples=6, deadline=None)
@given(
    st.sampled_from(("default", "chat-prefix", "flash-crowd")),
    st.integers(0, 99),
    st.integers(1, 30),
)
def test_the_episode_s_own_future_changes_nothing(scenario: str, seed: int, at: int) -> None:
    """Replacing the future by the requests the episode would have drawn anyway gives the same
    episode, bit for bit (prefix hashes included)."""
    env = AutoscaleEnv(scenario, horizon_s=HORIZON_S)
    env.reset(seed=seed)
    _play(env, at)
    snap = env.snapshot()
    tail = _play(env, 20)
    env.restore(snap)
    cluster = env.backend.cluster  # type: ignore[attr-defined]
    n, workload = cluster.ledger.num_arrived, cluster.workload
    env.backend.replace_future(workload.rows(n, len(workload)))
    assert _play(env, 20) == tail


def test_new_arrivals_are_served_and_accounted_and_bad_ones_refused() -> None:
    env = AutoscaleEnv("default", horizon_s=HORIZON_S)
    env.reset(seed=1)
    _play(env, 12)  # two minutes
    backend = env.backend
    ledger = backend.cluster.ledger  # type: ignore[attr-defined]
    now, arrived = backend.now, ledger.num_arrived
    before, finished = backend.arrived_since(0.0)
    assert len(before) == arrived and finished.dtype == bool and finished.any()
    with pytest.raises(ValueError, match="before the clock"):
        backend.replace_future(
            Workload.from_columns(
                arrival_s=[now - 1.0], klass=[0], prompt_tokens=[10], output_tokens=[5]
            )
        )
    assert ledger.num_arrived == arrived and len(ledger.outcome) >= arrived  # nothing lost
    future = Workload.from_columns(
        arrival_s=now + np.arange(1, 51, dtype=float),
        klass=np.zeros(50),
        prompt_tokens=np.full(50, 100),
        output_tokens=np.full(50, 20),
    )
    backend.replace_future(future)
    _play(env, 24)  # four more minutes: all 50 arrive (one a second) and end
    ledger = backend.cluster.ledger  # type: ignore[attr-defined]
    outcome = ledger.outcome
    assert ledger.num_arrived == arrived + 50 and len(outcome) == arrived + 50
    assert np.all(outcome[arrived:] != 0)  # every new request decided
    summary = backend.summary()
    assert sum(c.arrived for c in summary.values()) == arrived + 50


def test_a_closed_loop_and_a_live_server_refuse(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "default.toml").read_text()
    closed = tmp_path / "closed.toml"
    closed.write_text(
        text[: text.index("[[workload]]")] + '[[workload]]\nclass = "interactive"\n'
        'arrival = { kind = "closed", concurrency = 4, requests = 100 }\n'
        'prompt = { kind = "empirical", table = "azure-conv" }\n'
        'output = { kind = "empirical", table = "azure-conv" }\n'
    )
    env = AutoscaleEnv(str(closed), horizon_s=60.0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="closed loop"):
        env.backend.replace_future(Workload.concat([]))
    with pytest.raises(NotImplementedError, match="simulator"):
        VllmBackend.replace_future(object(), Workload.concat([]))  # type: ignore[arg-type]
