"""What a planning reference hands over: its ``Plan`` (an episode's actions, chosen by forking the
simulator, and what choosing them cost), and the ``ReplayAgent`` that plays one open loop.

Shared by ``agents/hindsight.py`` (``planner``, ``static-best``) and ``agents/forecast.py``
(``planner-forecast``), with the planners' common constants.

``save_given`` / ``load_given``: a folder of episodes already played (an agent's actions, reward
and environment settings, by agent, scenario and seed), which the planner starts from instead of
playing its bases again (``chiron benchmark`` runs the table's agents first and hands their
episodes over). The planner replays the one it starts from and fails if the replay does not
score what the file says, so a stale file cannot raise the ceiling.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import BaseAgent, Observation, Prediction
from agents.spec import portable
from chiron_gym.envs import AgentContext
from chiron_gym.envs.actions import ActionLayout

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
    given: int = 0  # bases whose episode was handed over (``load_given``), not played again

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
            "bases_given": self.given,
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


def corrected(layout: ActionLayout, action: Action, pool: int, sign: int) -> Action | None:
    """``action`` with ``sign`` more instances of ``pool``; None if that is past the step
    limit (the planners' one kind of change). In the target mode (a base that names counts:
    a clone, an offline policy) it is the pool's target count that moves, within
    ``[0, max_target]``."""
    if layout.targets:
        out = np.array(action, dtype=np.int64, copy=True)
        out[pool] += sign
        return out if 0 <= out[pool] <= layout.max_target else None
    deltas, caps = layout.split(action)
    assert deltas is not None
    deltas[pool] += sign
    return None if abs(deltas[pool]) > layout.k else layout.join(deltas, caps)


def _given_file(folder: Path, agent: str, scenario: str, seed: int) -> tuple[Path, str]:
    key = json.dumps([portable(agent), portable(scenario), int(seed)])
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz", key


def save_given(
    folder: Path,
    agent: str,
    scenario: str,
    seed: int,
    actions: list[Action],
    reward: float,
    env_kwargs: dict[str, Any],
) -> None:
    """Keep an episode of ``agent`` for the planner (module docstring); written whole or not at
    all (a reader never sees half a file)."""
    path, key = _given_file(folder, agent, scenario, seed)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        key=np.array(key),
        actions=np.asarray(actions, dtype=np.int64),
        reward=np.float64(reward),
        env_kwargs=np.array(json.dumps(env_kwargs, sort_keys=True)),
    )
    tmp.replace(path)


def load_given(
    folder: Path, agent: str, scenario: str, seed: int
) -> tuple[list[Action], float, dict[str, Any]] | None:
    """The episode ``save_given`` kept for ``agent``, ``scenario`` and ``seed``: its actions,
    reward and environment settings; None if there is none."""
    path, key = _given_file(folder, agent, scenario, seed)
    if not path.is_file():
        return None
    with np.load(path) as f:
        if str(f["key"]) != key:  # a digest collision: play the base instead
            return None
        actions = [a.copy() for a in f["actions"]]
        return actions, float(f["reward"]), json.loads(str(f["env_kwargs"]))


__all__ = [
    "BLOCKS",
    "EPS",
    "Action",
    "Plan",
    "ReplayAgent",
    "corrected",
    "load_given",
    "save_given",
]
