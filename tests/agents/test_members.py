"""The member-selection rule of ``make ppo-model SEED=k`` (``agents/run/members.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.run.members import candidates, rank_key


def _cell(agent: str, scenario: str, reward: float, ia: float, score: float) -> dict[str, object]:
    return {
        "agent": agent,
        "scenario": scenario,
        "reward": reward,
        "interactive_attainment": ia,
        "score": score,
        "chiron_above_static": scenario != "calm",
    }


def test_wins_need_the_reward_and_attainment_within_a_point_then_the_mean_score() -> None:
    cells = [
        _cell("chiron", "a", 100.0, 0.95, 1.0),
        _cell("chiron", "b", 100.0, 0.95, 1.0),
        _cell("chiron", "calm", 100.0, 0.95, float("nan")),
        _cell("x", "a", 101.0, 0.941, 1.1),  # a win: 0.9 points below
        _cell("x", "b", 150.0, 0.93, 1.5),  # not a win: 2 points below
        _cell("x", "calm", 99.0, 0.99, 7.0),  # score left out: static is above Chiron here
        _cell("y", "a", 100.0, 0.99, 1.0),  # equal reward: not a win
        _cell("y", "b", 90.0, 0.99, 0.9),
        _cell("y", "calm", 120.0, 0.95, 9.0),  # a win; score left out
    ]
    assert rank_key("x", cells) == (1, pytest.approx(1.3))
    assert rank_key("y", cells) == (1, pytest.approx(0.95))
    assert rank_key("x", cells) > rank_key("y", cells)


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no seed"):
        candidates(tmp_path)
    (tmp_path / "seed3" / "checkpoints").mkdir(parents=True)
    (tmp_path / "seed3" / "checkpoints" / "ppo_20000_steps.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"ppo_40000_steps\.zip"):
        candidates(tmp_path)
