"""``planner-forecast`` plans on the past alone: its decisions before a time do not change when
the traffic after it does; its forecast repeats the recent past; its plan replays exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import agents.forecast as forecast_module
from agents.forecast import forecast, forecast_plan
from agents.run.tasks import run_any
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.sim import Workload

SCENARIO = "default"  # 10 minutes, 60 decisions of 10 s; 24 blocks of 3 decisions


def test_the_forecast_repeats_the_recent_past_without_its_bulk_submissions() -> None:
    env = AutoscaleEnv(SCENARIO)
    env.reset(seed=2)
    hold = env.layout.join([0, 0, 0], None)
    assert len(forecast(env.backend, 60.0)) == 0  # no history yet
    for _ in range(12):  # two minutes
        env.step(hold)
    now = env.backend.now
    past, _ = env.backend.arrived_since(now - 60.0)
    out = forecast(env.backend, 60.0)
    times, counts = np.unique(past.arrival_s, return_counts=True)
    single = np.isin(past.arrival_s, times[counts == 1]) & (past.arrival_s < now)
    assert len(out) == int(single.sum()) > 0
    assert np.all(out.arrival_s > now - 1e-9) and np.all(out.arrival_s <= now + 60.0)
    np.testing.assert_allclose(out.arrival_s, past.arrival_s[single] + 60.0)
    assert np.array_equal(out.prompt_tokens, past.prompt_tokens[single])
    # a shorter past is repeated: 150 s from 120 s of history
    early = forecast(env.backend, 150.0)
    assert np.all(np.diff(early.arrival_s) >= 0) and early.arrival_s.max() <= now + 150.0


class _FutureSwapped(AutoscaleEnv):
    """The same episode with every arrival after ``CUT_S`` replaced by a quieter stream."""

    CUT_S = 300.0

    def reset(self, **kw: Any) -> Any:
        out = super().reset(**kw)
        cluster = self.backend.cluster  # type: ignore[attr-defined]
        w = cluster.workload
        keep = w.arrival_s <= self.CUT_S
        rows = w.rows(int(keep.sum()), len(w))
        every_third = np.arange(0, len(rows), 3)
        quieter = Workload.from_columns(
            arrival_s=rows.arrival_s[every_third],
            klass=rows.klass[every_third],
            prompt_tokens=rows.prompt_tokens[every_third],
            output_tokens=rows.output_tokens[every_third],
            deadline_s=rows.deadline_s[every_third],
        )
        arrived = cluster.ledger.num_arrived  # those at t = 0, if any
        self.backend.replace_future(Workload.concat([w.rows(arrived, int(keep.sum())), quieter]))
        return out


def test_decisions_before_a_time_do_not_depend_on_the_traffic_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = forecast_plan(SCENARIO, 4)
    monkeypatch.setattr(forecast_module, "AutoscaleEnv", _FutureSwapped)
    swapped = forecast_plan(SCENARIO, 4)
    # a decision at time t sees arrivals up to t, and its forecast repeats them: the decisions
    # before the cut saw only traffic that both episodes share
    before = int(_FutureSwapped.CUT_S // 10)
    assert [a.tolist() for a in plain.actions[:before]] == [
        a.tolist() for a in swapped.actions[:before]
    ]
    assert plain.reward != swapped.reward  # the future did change


def test_its_plan_replays_exactly_and_it_corrects_the_base_only_after_history() -> None:
    made = forecast_plan(SCENARIO, 6)
    assert made.decisions == 60 and made.base == "chiron"
    assert forecast_plan(SCENARIO, 6).reward == made.reward  # deterministic
    ep = run_any("planner-forecast", SCENARIO, 6)  # raises if the replay differs
    assert ep.row["reward"] == made.reward
    assert ep.row["_params"]["wall_s_per_decision"] > 0
    assert 0 <= made.kept <= 23  # never at the first block: no history
