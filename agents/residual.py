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
action head's bias favours r = 0 (``bias_towards_zero``).

``ResidualWrapper`` is the training side (a Gymnasium wrapper); ``ChironResidual`` the shared
arithmetic that ``PPOAgent`` also uses when it plays a residual model (``train.json`` says
``"residual": "chiron"``).

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
from chiron_gym.envs import AgentContext, AutoscaleEnv
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

    @property
    def action_space(self) -> gym.spaces.MultiDiscrete:
        return gym.spaces.MultiDiscrete([2 * self.step + 1] * self.n)

    def propose(self, obs: npt.NDArray[np.float32], start: bool) -> npt.NDArray[np.float32]:
        """Run Chiron's global loop on ``obs`` (once per decision, as the ``chiron`` agent does);
        its proposed instance changes, as features."""
        action, _ = self.chiron.predict(obs, episode_start=np.array([start]))
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
        return out

    def chiron_action(self) -> npt.NDArray[np.int64]:
        """Chiron's own action (the residual r = 0), for the last proposal."""
        return self.compose(np.full(self.n, self.step, dtype=np.int64))


class ChironBaseline:
    """Chiron's per-step rewards on a draw: the ``chiron`` agent plays ``env`` (a second
    environment built like the training one) from ``reset(seed)`` to the episode's end, through
    the shared episode loop (the same actions as a residual answering r = 0)."""

    def __init__(self, env: AutoscaleEnv) -> None:
        self.env = env
        self.rewards: list[float] = []
        self.scale = 1.0

    def play(self, seed: int) -> None:
        from agents.run.episode import play  # the one episode loop (agents/run/episode.py)

        run = play(self.env, ChironAgent, seed, record_series=True)
        self.rewards = rewards = run.series.get("reward/step", [])
        # one GPU for one decision at this scenario's weights: the scale's floor, so that a draw
        # on which Chiron earns almost nothing does not blow the relative reward up
        gpu_decision = (
            self.env.reward_weights["gpu_cost"] * self.env.scenario.decision_interval_s / 3600.0
        )
        mean_abs = float(np.mean(np.abs(rewards))) if rewards else 0.0
        self.scale = max(mean_abs, gpu_decision, 1e-9)

    def relative(self, t: int, reward: float) -> float:
        """Step ``t``'s reward relative to Chiron's at the same step of the same draw."""
        base = self.rewards[t] if t < len(self.rewards) else 0.0
        return (reward - base) / self.scale


def residual_penalty_error(cost: float) -> str | None:
    """What is wrong with a residual penalty (training's ``--residual-penalty``), or None."""
    if cost >= 0.0 and np.isfinite(cost):
        return None
    return f"must be a finite number >= 0, got {cost}"


class ResidualWrapper(gym.Wrapper[Any, Any, Any, Any]):
    """``AutoscaleEnv`` (action mode ``global``) seen by a residual policy on Chiron."""

    def __init__(
        self,
        env: AutoscaleEnv,
        step: int = 1,
        residual_penalty: float = 0.0,
        features: int | None = None,
        baseline_env: AutoscaleEnv | None = None,
    ) -> None:
        super().__init__(env)
        error = residual_penalty_error(residual_penalty)
        if error is not None:
            raise ValueError(f"residual_penalty {error}")
        self.step_size = step
        # training only: reward units charged per instance of correction per decision, so that
        # the policy leaves Chiron only where that pays (``step`` reports it as the reward term
        # ``deviation``; evaluation plays the environment's own reward)
        self.residual_penalty = float(residual_penalty)
        self._residual: ChironResidual | None = None
        base = env.observation_space
        assert isinstance(base, gym.spaces.Box)
        # the policy reads the first ``features`` of the environment's (an earlier release's
        # observation; Chiron's proposal still reads them all)
        self.features = base.shape[0] if features is None else features
        k = env.layout.k
        n = len(POOL_NAMES)
        self.observation_space = gym.spaces.Box(
            low=np.concatenate([base.low[: self.features], np.full(n, -k, dtype=np.float32)]),
            high=np.concatenate([base.high[: self.features], np.full(n, k, dtype=np.float32)]),
            dtype=np.float32,
        )
        self.action_space = gym.spaces.MultiDiscrete([2 * step + 1] * n)
        # training only: the reward relative to Chiron's on the same draw (module docstring)
        self.baseline = None if baseline_env is None else ChironBaseline(baseline_env)
        self._t = 0

    def _observe(self, obs: Any, start: bool) -> npt.NDArray[np.float32]:
        assert self._residual is not None
        proposal = self._residual.propose(obs, start)
        return np.concatenate([obs[: self.features], proposal]).astype(np.float32)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        # the context changes with each family draw: Chiron is built for this episode's cluster
        ctx = self.env.unwrapped.agent_context()  # type: ignore[attr-defined]
        self._residual = ChironResidual(ctx, self.step_size)
        self._t = 0
        if self.baseline is not None:
            self.baseline.play(self.env.unwrapped.episode_seed)  # type: ignore[attr-defined]
        return self._observe(obs, True), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        assert self._residual is not None, "reset() before step()"
        obs, reward, terminated, truncated, info = self.env.step(self._residual.compose(action))
        if self.residual_penalty > 0.0:
            r = np.asarray(action, dtype=np.int64).reshape(-1)
            charge = self.residual_penalty * float(np.abs(r - self.step_size).sum())
            reward = float(reward) - charge
            info = {**info, "reward_terms": {**info["reward_terms"], "deviation": -charge}}
        if self.baseline is not None:
            reward = self.baseline.relative(self._t, float(reward))
        self._t += 1
        return self._observe(obs, False), float(reward), terminated, truncated, info

    def close(self) -> None:
        if self.baseline is not None:
            self.baseline.env.close()
        super().close()  # type: ignore[no-untyped-call]


def bias_towards_zero(model: Any, step: int, logit: float = 2.0) -> None:
    """Start the policy near Chiron: raise the action head's bias of r = 0 by ``logit`` (the
    head's weights start near zero, so r = 0 begins with probability e^logit / (e^logit + 2R))."""
    import torch

    net = model.policy.action_net
    with torch.no_grad():
        net.bias[step :: 2 * step + 1] += logit


__all__ = [
    "RESIDUALS",
    "RESIDUAL_ENV_KWARGS",
    "ChironBaseline",
    "ChironResidual",
    "ResidualWrapper",
    "bias_towards_zero",
    "residual_penalty_error",
]
