"""A scored evaluation episode, with its figure: PPO's evaluations during training
(``agents/train/callbacks.py``) and Tune's trials (``agents/train/tune.py``) score a policy with
it. It plays through the one episode loop (``agents/run/episode.py``) and draws with
``agents/run/reporting.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.base import Agent
from agents.run.episode import play
from agents.run.reporting import episode_figure
from chiron_gym.envs import AgentContext, AutoscaleEnv


def evaluation_episode(
    make_policy: Callable[[AgentContext], Agent],
    scenario: str,
    action_mode: str,
    seed: int,
    env_kwargs: dict[str, Any] | None,
    series: bool = False,
) -> dict[str, Any]:
    """A scored episode (PPO's evaluations, Tune trials); with ``series`` its figure too."""
    env = AutoscaleEnv(scenario, action_mode=action_mode, **(env_kwargs or {}))
    run = play(env, make_policy, seed, record_series=series)
    out: dict[str, Any] = {
        "reward": run.reward,
        "interactive_attainment": run.info["interactive_attainment"],
        "gpu_hours": run.info["gpu_hours"],
    }
    if series:
        out["figure"] = episode_figure(run.series, f"evaluation episode, seed {seed}")
    env.close()
    return out


__all__ = ["evaluation_episode"]
