"""The PPO agent that acts: a trained Stable-Baselines3 model with the agents' ``predict``.

``PPOAgent.load(path)`` reads ``model.zip`` and its observation statistics without running code
from the files (``agents/model_files.py``); ``chiron evaluate --agents ppo:PATH`` runs it
beside the others. Training is ``agents/train/ppo.py`` (``chiron train ppo``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import BaseAgent, Observation, Prediction
from agents.defer import DEFER_FEATURE, DEFER_KEY, Deferral, check_defer
from agents.model_files import (
    TrainError,
    check_loadable,
    load_model,
    load_normalizer,
    vecnormalize_name,
)
from chiron_gym.config import InputError
from chiron_gym.envs import AgentContext

# ``--algo``: SB3's PPO, and sb3-contrib's MaskablePPO (the env's ``action_masks()``) and
# RecurrentPPO (an LSTM policy); each reads its own zoo file, ``agents/hyperparams/<algo>.yml``.
ALGOS = ("ppo", "maskable-ppo", "recurrent-ppo")


def algo_class(algo: str) -> Any:
    """The SB3 class of ``algo`` (one of ``ALGOS``)."""
    if algo == "ppo":
        from stable_baselines3 import PPO

        return PPO
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    if algo == "recurrent-ppo":
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO
    raise TrainError(f"unknown algorithm {algo!r}; known: {', '.join(ALGOS)}")


class PPOAgent(BaseAgent):
    """A trained PPO model with the agents' ``predict`` (observations normalised as in training).

    Without a context (``PPOAgent.load(path)``) it acts on any observation it is given; with one
    it checks first that the model's action layout is the environment's.
    """

    name = "ppo"

    def __init__(
        self,
        model: Any,
        obs_normalizer: Any,
        ctx: AgentContext | None = None,
        residual_step: int | None = None,
    ) -> None:
        self.model = model
        self.vn = obs_normalizer
        self.residual: Any = None
        self.defer: Deferral | None = None  # play Chiron out of the training support
        if residual_step is not None:
            from agents.residual import ChironResidual

            if ctx is None:
                raise ValueError("a residual PPO model (on Chiron) needs the environment's context")
            self.residual = ChironResidual(ctx, residual_step)
        if ctx is not None:
            super().__init__(ctx)
            nvec = tuple(int(n) for n in model.action_space.nvec)
            want = self.residual.action_space.nvec if self.residual is not None else ctx.nvec
            if nvec != tuple(int(n) for n in want):
                raise ValueError(
                    f"the PPO model acts on {list(nvec)} but the environment expects "
                    f"{[int(n) for n in want]} (action_mode {ctx.action_mode!r}"
                    f"{', a residual on Chiron' if self.residual is not None else ''})"
                )

    @classmethod
    def files(cls, path: str | Path) -> tuple[Path, Path, dict[str, Any]]:
        """``(model zip, its statistics' .pkl name, train.json)`` of a training folder or a
        ``.zip`` path (the statistics are read from the ``.npz`` of the same name when there is
        one: ``agents/model_files.py``)."""
        p = Path(path)
        folder = p if p.is_dir() else p.parent
        zip_path = p / "model.zip" if p.is_dir() else p
        if not zip_path.is_file():
            raise InputError(f"{zip_path}: no PPO model here (train one: chiron train ppo)")
        record = folder / "train.json"
        try:
            meta = json.loads(record.read_text()) if record.is_file() else {}
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"{record}: not a JSON training record ({e})") from None
        if not isinstance(meta, dict):
            raise InputError(f"{record}: expected a JSON object")
        return zip_path, folder / vecnormalize_name(zip_path.name), meta

    @classmethod
    def check(cls, path: str | Path) -> None:
        """Fail before any episode if the model cannot be loaded as it stands (missing, or
        needing ``--trust-model``)."""
        zip_path, stats, meta = cls.files(path)
        check_loadable(zip_path, stats, algo_class(str(meta.get("algo", "ppo"))))

    @classmethod
    def load(cls, path: str | Path, ctx: AgentContext | None = None) -> PPOAgent:
        """From a training folder (``model.zip`` + statistics) or a ``.zip`` path, without
        running code from the files unless trusted (``agents/model_files.py``)."""
        zip_path, stats, meta = cls.files(path)
        model = load_model(zip_path, algo_class(meta.get("algo", "ppo")))
        vn = load_normalizer(stats)
        agent = cls(model, vn, ctx, meta.get("residual_step") if meta.get("residual") else None)
        agent.set_defer(Deferral.from_record(meta.get(DEFER_KEY), str(zip_path.parent)))
        return agent

    @classmethod
    def from_model(
        cls, model: Any, vn: Any, ctx: AgentContext, residual_step: int | None = None
    ) -> PPOAgent:
        return cls(model, vn, ctx, residual_step)

    def reset(self) -> None:
        pass  # a residual's Chiron is reset by ``propose`` at the episode's start

    def set_defer(self, defer: Deferral | None) -> None:
        """Play Chiron's action while ``defer`` is active (``agents/defer.py``)."""
        self.defer = check_defer(defer, self.residual)

    def defer_above(self, above: float, feature: str | None = None) -> None:
        """``ppo:PATH[defer_above=X;defer_feature=NAME]``: the deferral's threshold set to
        ``above`` (on ``feature``, else the model's, else the default)."""
        if feature is None:
            feature = self.defer.feature if self.defer is not None else DEFER_FEATURE
        self.set_defer(Deferral(above, feature))

    def policy_input(self, obs: Observation, start: Any) -> Observation:
        """What the policy reads for the environment's ``obs`` (before normalisation): for a
        residual, the observation with Chiron's proposal appended (Chiron runs here, once)."""
        raw = np.asarray(obs, dtype=np.float32)
        # Features are only ever appended (docs/env.md): a model trained before a feature was
        # added reads the prefix it knows.
        n = int(self.model.observation_space.shape[0])
        if self.residual is None:
            return raw[..., :n] if raw.shape[-1] > n else raw
        if raw.ndim != 1:
            raise ValueError(
                "a residual PPO model acts on one observation at a time (its Chiron keeps "
                f"one episode's state), got an array of shape {raw.shape}"
            )
        first = start is not None and bool(np.any(start))
        proposal = self.residual.propose(raw, first)
        return np.concatenate([raw[: n - len(proposal)], proposal])

    def params(self) -> dict[str, Any]:
        """A residual model's departures from Chiron this episode (none for a direct model)."""
        return self.residual.departure_stats() if self.residual is not None else {}

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        raw = obs
        obs = self.policy_input(obs, start)
        if self.defer is not None and self.defer.active(raw):
            return self.residual.chiron_action(), state
        if self.vn is not None:
            obs = self.vn.normalize_obs(obs)
        action, state = self.model.predict(
            obs, state=state, episode_start=start, deterministic=deterministic
        )
        if self.residual is not None:
            return self.residual.compose(action), state
        return np.asarray(action, dtype=np.int64), state


__all__ = ["ALGOS", "PPOAgent", "algo_class"]
