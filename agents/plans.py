"""What a planning reference hands over: its ``Plan`` (an episode's actions, chosen by forking the
simulator, and what choosing them cost), and the ``ReplayAgent`` that plays one open loop.

Shared by ``agents/hindsight.py`` (``planner``, ``static-best``) and ``agents/forecast.py``
(``planner-forecast``), with the planners' common constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import BaseAgent, Observation, Prediction
from chiron_gym.envs import AgentContext

Action = npt.NDArray[np.int64]
BLOCKS = 24  # the planners' blocks per episode
EPS = 1e-6  # a change is kept only if it raises the reward by more than this


@dataclass
class Plan:
    """An episode's actions chosen by a planner, and what choosing them cost."""

    agent: str
    base: str  # the base whose episode the plan started from
    env_kwargs: dict[str, Any]
    actions: list[Action]
    reward: float
    wall_s: float = 0.0
    simulated_decisions: int = 0  # decisions simulated while planning (every fork's included)
    kept: int = 0  # changes kept by the search (planner-forecast: blocks it changed)
    bases: dict[str, float] = field(default_factory=dict)  # each base's reward

    @property
    def decisions(self) -> int:
        return len(self.actions)

    def params(self) -> dict[str, Any]:
        """What a results row records of the plan (``_params``)."""
        return {
            "base": self.base,
            "planned_reward": self.reward,
            "wall_s_per_decision": self.wall_s / max(1, self.decisions),
            "simulated_decisions": self.simulated_decisions,
            "changes_kept": self.kept,
            "base_rewards": dict(self.bases),
        }


class ReplayAgent(BaseAgent):
    """Plays a plan's actions in order (open loop)."""

    name = "replay"

    def __init__(self, ctx: AgentContext, plan: Plan) -> None:
        super().__init__(ctx)
        self.plan = plan
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        if self.i >= len(self.plan.actions):
            raise RuntimeError(
                f"{self.plan.agent}: the plan has {len(self.plan.actions)} decisions and the "
                "episode asks for more: it is replayed in an environment it was not made for"
            )
        self.i += 1
        return self.plan.actions[self.i - 1].copy(), state


__all__ = ["BLOCKS", "EPS", "Action", "Plan", "ReplayAgent"]
