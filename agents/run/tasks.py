"""One task of an evaluation grid: an agent's episode, or a planning reference's plan played.

``run_any(agent, scenario, seed)`` is ``run_episode`` for every name ``chiron evaluate`` and
``chiron benchmark`` accept. A planning reference (``PLANNERS``: ``planner`` and ``static-best``
of ``agents/hindsight.py``, which know the episode's traffic; ``planner-forecast`` of
``agents/forecast.py``, which knows only its past) first plans the episode by forking the
simulator, in the caller's ``env_kwargs`` over its own settings; its plan is then replayed open
loop in a fresh environment of the plan's settings and scored as any agent is, and the replay
must score exactly what the plan did. ``episode_task`` is the same with positional arguments,
for the executors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agents.forecast import forecast_plan
from agents.hindsight import default_bases, plan, static_best
from agents.plans import Plan, ReplayAgent
from agents.run.episode import Episode, episode_row, run_episode
from agents.spec import PLANNERS, is_planner, split_planner_spec
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.envs.autoscale_v1 import is_disaggregated


def plan_for(
    agent: str,
    scenario: str,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    given: Path | None = None,
) -> Plan:
    """The plan of reference ``agent`` (one of ``PLANNERS``, or ``planner[also=...]``); the
    planner starts from the episodes in ``given`` where they are (``agents/plans.py``)."""
    name, also = split_planner_spec(agent)
    if name == "planner":
        chosen = tuple(dict.fromkeys((*default_bases(), *also)))
        return plan(scenario, seed, chosen, env_kwargs, given=given)
    if agent == "planner-forecast":
        return forecast_plan(scenario, seed, env_kwargs)
    if agent == "static-best":
        return static_best(scenario, seed, env_kwargs)
    raise ValueError(f"unknown planning reference {agent!r}; known: {', '.join(PLANNERS)}")


def run_any(
    agent: str,
    scenario: str,
    seed: int,
    *,
    env_kwargs: dict[str, Any] | None = None,
    given: Path | None = None,
) -> Episode:
    """The episode of ``agent`` (an agent spec or a planning reference); its row. ``given``:
    episodes the planner may start from (``plan_for``)."""
    if not is_planner(agent):
        return run_episode(agent, scenario, seed, env_kwargs=env_kwargs)
    if is_disaggregated(scenario):
        raise ValueError(
            f"{agent} plans the aggregated pools only, and scenario {scenario!r} has prefill and "
            "decode pools (their planners: dynamo-sla, heteroscale, chiron; docs/agents.md)"
        )
    t0 = time.perf_counter()
    made = plan_for(agent, scenario, seed, env_kwargs, given)
    env = AutoscaleEnv(scenario, **made.env_kwargs)
    try:
        ep = episode_row(env, agent, scenario, seed, lambda ctx: ReplayAgent(ctx, made))
    finally:
        env.close()
    if ep.row["reward"] != made.reward:  # the same rewards summed in the same order
        raise RuntimeError(
            f"{agent} on {scenario} seed {seed}: the replayed plan scored {ep.row['reward']!r}, "
            f"the planner's own evaluation {made.reward!r} (the simulator should be deterministic)"
        )
    ep.row["_params"] = made.params()
    return Episode(ep.row, ep.series, time.perf_counter() - t0, made.actions, made.env_kwargs)


def episode_task(
    agent: str,
    scenario: str,
    seed: int,
    env_kwargs: dict[str, Any] | None,
    given: str | None = None,
) -> Episode:
    """``run_any`` with positional arguments: one task of an evaluation grid."""
    return run_any(
        agent, scenario, seed, env_kwargs=env_kwargs, given=None if given is None else Path(given)
    )


__all__ = ["episode_task", "plan_for", "run_any"]
