"""Agents: every agent through every bundled scenario; Chiron's estimator and behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

import scenarios
from agents import make_agent, names
from agents.disaggregated import PD_AGENTS
from agents.run.episode import play, run_episode
from agents.spec import PLANNERS
from chiron_gym.control.qlm import estimate, max_pressure
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.scenario import load
from tests.conftest import require_data

# the hindsight references run many episodes per episode: tests/agents/test_hindsight.py; the
# planners of prefill and decode pools run the disaggregated scenarios, as Chiron and static do;
# spot-hedge needs a spot pool (spot-mix)
CASES = [
    (a, s)
    for s in scenarios.names()
    for a in names()
    if a not in PLANNERS and a not in PD_AGENTS and (a != "spot-hedge" or s == "spot-mix")
] + [
    (a, s)
    for s in scenarios.disaggregated_names()
    if s.startswith("disaggregated/pd-")
    for a in (*PD_AGENTS, "chiron", "static")
]


@pytest.mark.slow
@pytest.mark.parametrize(("agent", "scenario"), CASES)
def test_every_agent_runs_every_scenario(agent: str, scenario: str) -> None:
    """An episode (at most 15 minutes of it); attainments are fractions."""
    if scenario.startswith("disaggregated/"):
        require_data("aiconfigurator")
    horizon = min(900.0, load(scenario).horizon_s)
    ep = run_episode(agent, scenario, 0, env_kwargs={"horizon_s": horizon})
    row = ep.row
    assert 0.0 <= row["interactive_attainment"] <= 1.0 and 0.0 <= row["batch_attainment"] <= 1.0
    assert row["interactive_arrived"] + row["batch_arrived"] > 0
    assert row["gpu_hours"] > 0 and math.isfinite(row["reward"])
    assert len(ep.series["t"]) == row["steps"]


def test_qlm_estimate_matches_its_formula_on_hand_made_queues() -> None:
    """W(g) = (N mu + z sigma sqrt(N)) / throughput, N counting every request ahead."""
    groups = [(600.0, 100), (1200.0, 300), (3600.0, 4)]
    q = {"now_s": 100.0, "tokens_per_s": 2000.0, "mean_output": 200.0, "std_output": 150.0}
    est = estimate(groups, **q, startup_s=80.0, z=1.645)
    for e, n in zip(est, (100, 400, 404), strict=True):
        want = (n * q["mean_output"] + 1.645 * q["std_output"] * math.sqrt(n)) / q["tokens_per_s"]
        assert e.requests_ahead == n and e.wait_s == pytest.approx(want, rel=1e-12)
    assert est[0].slack_s == 600.0 - 100.0 - 80.0
    assert est[1].pressure == pytest.approx(est[1].wait_s / (1200.0 - 180.0))
    assert max_pressure(est) == max(e.pressure for e in est)
    assert max_pressure([]) == 0.0
    late = estimate([(50.0, 10)], now_s=100.0, tokens_per_s=1.0, mean_output=1.0, std_output=0.0)
    assert late[0].pressure == math.inf
    stalled = estimate([(900.0, 5)], now_s=0.0, tokens_per_s=0.0, mean_output=100.0, std_output=0)
    assert stalled[0].wait_s == math.inf


def test_chiron_scales_up_in_a_flash_crowd_and_down_after() -> None:
    """flash-crowd: 4 -> 20 req/s at 600 s for 300 s. Chiron adds instances within two decision
    intervals of the step, before the queue peaks, and releases them after the crowd."""
    run = play(
        AutoscaleEnv("flash-crowd"), lambda ctx: make_agent("chiron", ctx), 0, record_series=True
    )
    t = np.array(run.series["t"])
    n = np.array(run.series["cluster/instances_interactive"])
    q = np.array(run.series["queue/interactive"])
    before = n[t <= 600].max()
    first_up = t[(t > 600) & (n > before)].min()
    peak_t = t[np.argmax(q)]
    assert first_up <= 620.0 and first_up < peak_t, (first_up, peak_t)
    assert n[(t > 600) & (t < 900)].max() >= before + 4
    assert n[-1] < n[(t > 600) & (t < 900)].max() and n[-1] <= before + 1


def test_unknown_agent_names_the_nearest() -> None:
    env = AutoscaleEnv("default")
    with pytest.raises(ValueError, match="did you mean 'llumnix'"):
        make_agent("lumnix", env.agent_context())


def test_rule_agents_refuse_local_mode() -> None:
    env = AutoscaleEnv("default", action_mode="local")
    with pytest.raises(ValueError, match="use action_mode 'full' or 'global'"):
        make_agent("llumnix", env.agent_context())
    make_agent("chiron", env.agent_context())  # Chiron's local half works alone
