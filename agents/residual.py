"""Residual PPO on Chiron: the policy corrects Chiron's global loop instead of replacing it.

Residual reinforcement learning (Johannink et al., "Residual Reinforcement Learning for Robot
Control", ICRA 2019; Silver et al., "Residual Policy Learning", 2018) learns a correction on top
of a fixed controller. Here the controller is Chiron's global loop (``agents/chiron.py``, the
same object the ``chiron`` agent plays) and the correction is a small change per pool:

    instance change = clip(Chiron's change + r, -k, k),  r in {-R, ..., R}

(``R = residual_step``, default 1; ``k`` Chiron's step limit, 16). The environment runs Chiron's
per-instance local loop as it does for ``chiron`` (action mode ``global``). The policy sees the
environment's observation with Chiron's proposed change appended (one feature per pool, in
instances), so it can learn when to overrule it. A policy that always answers r = 0 *is*
Chiron, step for step (``tests/agents/test_residual.py``); training starts near it, because the
action head's bias favours r = 0 (``bias_towards_zero`` in ``agents/train/residual_env.py``).

``ChironResidual`` (here) is the arithmetic that ``PPOAgent`` uses when it plays a residual model
(``train.json`` says ``"residual": "chiron"``); the training side, ``ResidualWrapper`` (a
Gymnasium wrapper) with the relative reward below, is ``agents/train/residual_env.py``.

**Relative reward** (training only, ``--relative-reward``): at each reset Chiron plays the same
draw (the episode's seed) to the end in a second environment, and the policy is paid, per step,

    (r_t - r_t^Chiron) / s,   s = max(mean_t |r_t^Chiron|, one GPU for one decision)

so an episode's return is its margin over Chiron in units of Chiron's own per-step reward on that
draw. Subtracting Chiron's reward (which no action changes) removes the draw's difficulty from the
return; dividing by ``s`` weighs a calm draw's idle GPUs as much as a burst's misses, where the raw
reward lets the bursts (rewards of -10^4 to -10^5 per episode) outweigh the rest. A policy that
always answers r = 0 earns exactly 0 (``tests/agents/test_residual.py``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from agents.chiron import ChironAgent
from chiron_gym.envs import AgentContext
from chiron_gym.sim import POOL_NAMES

RESIDUALS = ("chiron",)  # controllers a residual policy may sit on
# the environment a residual policy runs in: Chiron's own (global loop from the agent, local loop
# per instance in the environment, Chiron's step limit)
RESIDUAL_ENV_KWARGS: dict[str, Any] = dict(ChironAgent.env_kwargs)


class ChironResidual:
    """Chiron's proposal for each observation, and the residual's composition with it."""

    def __init__(self, ctx: AgentContext, step: int = 1) -> None:
        if ctx.action_mode != "global":
            raise ValueError(
                f"a residual policy on Chiron runs in action mode 'global', not {ctx.action_mode!r}"
            )
        if step < 1:
            raise ValueError(f"residual_step must be >= 1, got {step}")
        self.chiron = ChironAgent(ctx)
        self.step = step
        self.k = ctx.max_step_change
        self.n = len(POOL_NAMES)
        self.proposal = np.full(self.n, self.k, dtype=np.int64)  # Chiron's action (indices)
        # this episode's decisions, and those whose action is not Chiron's (``departures``)
        self.decisions = 0
        self.departures = 0

    @property
    def action_space(self) -> gym.spaces.MultiDiscrete:
        return gym.spaces.MultiDiscrete([2 * self.step + 1] * self.n)

    def propose(self, obs: npt.NDArray[np.float32], start: bool) -> npt.NDArray[np.float32]:
        """Run Chiron's global loop on ``obs`` (once per decision, as the ``chiron`` agent does);
        its proposed instance changes, as features."""
        action, _ = self.chiron.predict(obs, episode_start=np.array([start]))
        if start:
            self.decisions = self.departures = 0
        self.proposal = np.asarray(action, dtype=np.int64)
        return (self.proposal - self.k).astype(np.float32)

    def compose(self, residual: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The environment's action: Chiron's proposal moved by the residual, within bounds."""
        r = np.asarray(residual, dtype=np.int64).reshape(-1)
        if r.shape[0] != self.n or np.any(r < 0) or np.any(r > 2 * self.step):
            raise ValueError(
                f"a residual action is {self.n} integers in [0, {2 * self.step}], got {r.tolist()}"
            )
        out: npt.NDArray[np.int64] = np.clip(self.proposal + r - self.step, 0, 2 * self.k)
        self.decisions += 1
        self.departures += int(np.any(out != np.clip(self.proposal, 0, 2 * self.k)))
        return out

    def departure_stats(self) -> dict[str, float]:
        """How often this episode's actions were not Chiron's (for results rows' ``_params``)."""
        rate = self.departures / self.decisions if self.decisions else 0.0
        return {"decisions": self.decisions, "departures": self.departures, "departure_rate": rate}

    def chiron_action(self) -> npt.NDArray[np.int64]:
        """Chiron's own action (the residual r = 0), for the last proposal."""
        return self.compose(np.full(self.n, self.step, dtype=np.int64))


__all__ = ["RESIDUALS", "RESIDUAL_ENV_KWARGS", "ChironResidual"]
