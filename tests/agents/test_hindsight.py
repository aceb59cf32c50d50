"""The hindsight references: never below their bases, replayed exactly, within the step limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.hindsight import _changed, plan, static_best
from agents.plans import save_given
from agents.run.episode import run_episode
from agents.run.tasks import run_any
from chiron_gym.envs.actions import ActionLayout

SCENARIO = "default"  # 10 minutes, 60 decisions: an episode in a fraction of a second


def test_planner_is_at_least_its_best_base_and_its_replay_scores_the_same() -> None:
    made = plan(SCENARIO, 3, bases=("static", "chiron", "llumnix"))
    assert set(made.bases) == {"static", "chiron", "llumnix"}
    assert made.reward >= max(made.bases.values())
    assert made.decisions == 60
    assert made.base == max(made.bases, key=lambda k: made.bases[k])
    # each base, scored as an agent, gives the reward the planner saw for it
    for spec, reward in made.bases.items():
        assert run_episode(spec, SCENARIO, 3).row["reward"] == pytest.approx(reward, abs=1e-9)


def test_static_best_beats_or_equals_static_and_replays_exactly() -> None:
    best = static_best(SCENARIO, 5)
    static = run_episode("static", SCENARIO, 5).row
    assert best.reward >= static["reward"] - 1e-9
    ep = run_any("static-best", SCENARIO, 5)  # raises if the replay differs from the plan
    with pytest.raises(ValueError, match="plans by forking the simulator"):
        run_episode("static-best", SCENARIO, 5)  # a plan, not a policy
    assert ep.row["reward"] == pytest.approx(best.reward, abs=1e-6)
    assert ep.row["_params"]["base"].startswith("static-best{")
    assert ep.row["_params"]["wall_s_per_decision"] > 0


def test_a_change_stays_within_the_step_limit_and_is_undone_after_its_block() -> None:
    layout = ActionLayout("global", 2)
    actions = [layout.join([0, 0, 0], None) for _ in range(6)]
    out = _changed(layout, actions, 2, 1, 1, 2)
    assert out is not None and len(out) == 4
    assert [layout.split(a)[0] for a in out] == [[0, 1, 0], [0, 0, 0], [0, -1, 0], [0, 0, 0]]
    full = [layout.join([0, 2, 0], None)] * 3
    assert _changed(layout, full, 0, 1, 1, None) is None  # +3 is past k = 2
    assert _changed(layout, full, 1, 1, -1, 2) is None  # one block to go: as for the rest
    rest = _changed(layout, full, 0, 1, -1, None)
    assert rest is not None and [layout.split(a)[0][1] for a in rest] == [1, 2, 2]
    assert all(isinstance(a, np.ndarray) for a in rest)


def test_in_the_target_mode_a_change_moves_the_target_for_its_block() -> None:
    """A base that names counts (a clone, an offline policy: the target mode) is corrected by
    moving its target for each decision of the block; the sealed run of stop 56 crashed here
    when such a base was the best one."""
    layout = ActionLayout("target", 2)
    actions = [np.array([3, 2, 1, 1, 1, 1])] * 6
    out = _changed(layout, actions, 2, 1, 1, 2)
    assert out is not None and [a.tolist() for a in out] == [
        [3, 3, 1, 1, 1, 1],
        [3, 3, 1, 1, 1, 1],
        [3, 2, 1, 1, 1, 1],
        [3, 2, 1, 1, 1, 1],
    ]
    rest = _changed(layout, actions, 0, 2, -1, None)
    assert rest is not None and [int(a[2]) for a in rest] == [0] * 6
    assert _changed(layout, rest, 0, 2, -1, None) is None  # no count below 0
    top = [np.array([40, 2, 1, 1, 1, 1])] * 3
    assert _changed(layout, top, 0, 0, 1, None) is None  # nor above max_target
    assert actions[0].tolist() == [3, 2, 1, 1, 1, 1]  # the incumbent is left as it was


def test_the_benchmark_s_planner_takes_the_table_s_other_agents_as_bases() -> None:
    from agents.hindsight import ceiling_spec
    from agents.spec import is_planner, split_planner_spec

    assert ceiling_spec(["static", "chiron", "random", "planner"]) == "planner"
    assert ceiling_spec(["chiron", "ppo:agents/models/ppo-general"]) == "planner"  # a default
    spec = ceiling_spec(["chiron", "chiron-tuned", "chiron[headroom_instances=3]", "static-best"])
    assert spec == "planner[also=chiron-tuned|chiron[headroom_instances=3]]"
    assert split_planner_spec(spec) == ("planner", ("chiron-tuned", "chiron[headroom_instances=3]"))
    assert is_planner(spec) and is_planner("planner-forecast") and not is_planner("chiron")
    with pytest.raises(ValueError, match="also="):
        split_planner_spec("planner[chiron]")


def test_the_planner_started_from_episodes_handed_over_plans_the_same(tmp_path: Path) -> None:
    """``chiron benchmark`` hands the planner its table's episodes (``save_given``) rather than
    letting it play each base again: the plan is the same, and a stale episode is refused."""
    bases = ("static", "chiron", "llumnix", "static-best")
    own = plan(SCENARIO, 4, bases=bases)
    for spec in ("static", "chiron", "llumnix"):
        ep = run_episode(spec, SCENARIO, 4)
        save_given(tmp_path, spec, SCENARIO, 4, ep.actions, ep.row["reward"], ep.env_kwargs)
    sb = run_any("static-best", SCENARIO, 4)
    save_given(tmp_path, "static-best", SCENARIO, 4, sb.actions, sb.row["reward"], sb.env_kwargs)
    handed = plan(SCENARIO, 4, bases=bases, given=tmp_path)
    assert handed.given == 4 and own.given == 0
    assert handed.simulated_decisions < own.simulated_decisions
    assert (handed.base, handed.bases, handed.reward) == (own.base, own.bases, own.reward)
    assert [a.tolist() for a in handed.actions] == [a.tolist() for a in own.actions]
    # another seed's episode under the best base's name: its replay cannot score what it says
    best = own.base
    other = run_any(best, SCENARIO, 5) if best == "static-best" else run_episode(best, SCENARIO, 5)
    save_given(tmp_path, best, SCENARIO, 4, other.actions, own.bases[best] + 1.0, other.env_kwargs)
    with pytest.raises(RuntimeError, match="stale"):
        plan(SCENARIO, 4, bases=bases, given=tmp_path)
