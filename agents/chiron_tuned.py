"""``chiron-tuned``: Chiron with its global loop's headroom and latency weight tuned per workload,
by the procedure and budget that tune ``llumnix-tuned`` (``agents/tuning.py``), so that a tuned
baseline meets a tuned Chiron. The local loop keeps its defaults (the environment runs it).

The table ships in ``agents/tuned/chiron-tuned.json``; a scenario missing from it, or whose
description changed, is tuned when the agent is first built for it.
"""

from __future__ import annotations

from typing import Any

from agents.chiron import ChironAgent
from agents.tuning import Axis, TunedTable, grid_search
from chiron_gym.control.chiron import GlobalParams
from chiron_gym.envs import AgentContext
from chiron_gym.scenario import Scenario

AXES = [
    Axis("headroom_instances", (0, 1, 2, 4), low=0, integer=True),
    Axis("latency_weight", (0.5, 0.7, 1.0, 1.4, 2.0, 2.8), factor=1.4, low=0.0),
]


class ChironTunedAgent(ChironAgent):
    """Chiron with per-workload headroom and latency weight (``agents/tuned/chiron-tuned.json``)."""

    name = "chiron-tuned"

    def __init__(self, ctx: AgentContext, tuned: dict[str, Any] | None = None) -> None:
        tuned = TABLE.params(ctx.scenario) if tuned is None else tuned
        gp = GlobalParams(
            headroom_instances=int(tuned["headroom_instances"]),
            latency_weight=float(tuned["latency_weight"]),
        )
        super().__init__(ctx, global_=gp)


def score(scenario: Scenario, params: dict[str, float], seed: int) -> float:
    """The env reward of one episode of ``chiron-tuned`` at ``params``."""
    from agents.run.episode import play  # agents.run.episode imports this package's registry
    from chiron_gym.envs.autoscale_v1 import make_env  # prefill and decode pools too

    env = make_env(scenario, **ChironAgent.env_kwargs)
    run = play(env, lambda ctx: ChironTunedAgent(ctx, params), seed)
    env.close()
    return run.reward


def tune(scenario: Scenario, progress: bool = True) -> dict[str, Any]:
    """``agents/tuning.py``'s grid search over ``AXES``."""
    return grid_search(score, scenario, AXES, label="chiron-tuned", progress=progress)


TABLE = TunedTable("chiron-tuned", "chiron-tuned headroom_instances and latency_weight", tune)

__all__ = ["TABLE", "ChironTunedAgent", "tune"]
