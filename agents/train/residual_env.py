"""The training side of residual PPO on Chiron (``agents/residual.py`` states the method):
``ResidualWrapper``, the environment a residual policy trains in; ``ChironBaseline``, Chiron's
per-step rewards on the same draw, and ``RelativeToChiron``, which pays a policy (residual or
standalone) its reward relative to them; the check of a residual penalty, and
``bias_towards_zero``, which starts the policy near Chiron."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from agents.chiron import ChironAgent
from agents.residual import ChironResidual
from agents.run.episode import play
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.sim import POOL_NAMES


class ChironBaseline:
    """Chiron's per-step rewards on a draw: the ``chiron`` agent plays ``env`` (a second
    environment built like the training one) from ``reset(seed)`` to the episode's end, through
    the shared episode loop (the same actions as a residual answering r = 0)."""

    def __init__(self, env: AutoscaleEnv) -> None:
        self.env = env
        self.rewards: list[float] = []
        self.scale = 1.0

    def play(self, seed: int) -> None:
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


class RelativeToChiron(gym.Wrapper[Any, Any, Any, Any]):
    """A policy's environment paying, per step, its reward relative to Chiron's at the same step
    of the same draw (``ChironBaseline``; training only: evaluation plays the environment's own
    reward). ``env`` is the policy's (a ``ResidualWrapper`` for a residual, its penalty included);
    ``chiron_env`` is built like it in Chiron's settings."""

    def __init__(self, env: gym.Env[Any, Any], chiron_env: AutoscaleEnv) -> None:
        super().__init__(env)
        self.baseline = ChironBaseline(chiron_env)
        self._t = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.baseline.play(self.env.unwrapped.episode_seed)  # type: ignore[attr-defined]
        self._t = 0
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        reward = self.baseline.relative(self._t, float(reward))
        self._t += 1
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> Any:
        return self.env.unwrapped.action_masks()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.baseline.env.close()
        super().close()  # type: ignore[no-untyped-call,unused-ignore]


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

    def _observe(self, obs: Any, start: bool) -> npt.NDArray[np.float32]:
        assert self._residual is not None
        proposal = self._residual.propose(obs, start)
        return np.concatenate([obs[: self.features], proposal]).astype(np.float32)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        # the context changes with each family draw: Chiron is built for this episode's cluster
        ctx = self.env.unwrapped.agent_context()  # type: ignore[attr-defined]
        self._residual = ChironResidual(ctx, self.step_size)
        return self._observe(obs, True), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        assert self._residual is not None, "reset() before step()"
        obs, reward, terminated, truncated, info = self.env.step(self._residual.compose(action))
        if self.residual_penalty > 0.0:
            r = np.asarray(action, dtype=np.int64).reshape(-1)
            charge = self.residual_penalty * float(np.abs(r - self.step_size).sum())
            reward = float(reward) - charge
            info = {**info, "reward_terms": {**info["reward_terms"], "deviation": -charge}}
        return self._observe(obs, False), float(reward), terminated, truncated, info


def bias_towards_zero(model: Any, step: int, logit: float = 2.0) -> None:
    """Start the policy near Chiron: raise the action head's bias of r = 0 by ``logit`` (the
    head's weights start near zero, so r = 0 begins with probability e^logit / (e^logit + 2R))."""
    import torch

    net = model.policy.action_net
    with torch.no_grad():
        net.bias[step :: 2 * step + 1] += logit


__all__ = [
    "ChironBaseline",
    "RelativeToChiron",
    "ResidualWrapper",
    "bias_towards_zero",
    "residual_penalty_error",
]
