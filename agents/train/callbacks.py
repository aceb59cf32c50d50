"""Stable-Baselines3 callbacks of ``chiron train ppo``: what TensorBoard shows while PPO learns.

- ``EpisodeMetrics``: per finished episode, ``episode/<key>`` of ``MONITOR_KEYS``,
  ``reward_terms/<term>`` and, on a family, the drawn parameters ``scenario/<key path>``
  (averaged per rollout);
- ``EvalVsChiron``: every ``eval_freq`` steps, PPO (deterministic) and Chiron on the same seeds
  (``eval/*``, the figure ``eval/episode``), and ``best_model.zip`` when PPO improves;
- ``ProgressBar``: steps done, with tqdm.

Imported only when training (it imports SB3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.logger import Figure
from stable_baselines3.common.vec_env import VecNormalize

from agents.model_files import ObsNormalizer, normalizer_name, save_normalizer
from agents.train.scoring import evaluation_episode

MONITOR_KEYS = ("interactive_attainment", "batch_attainment", "gpu_hours")
TERMS = ("slo_met_work", "gpu_cost", "violation", "churn", "at_risk")


def scenario_scalars(
    draws: dict[str, Any], seen: dict[str, set[str]], prefix: str = "scenario"
) -> dict[str, float]:
    """A family episode's draws as TensorBoard scalars: numbers as they are (nested tables by
    key path); a drawn name or kind as ``<path>/<value>`` = 1, and 0 for the other values of
    that path seen so far (``seen``, updated), so that a tag's mean is its frequency (from the
    first rollout that drew every option on)."""
    out: dict[str, float] = {}
    for key, value in draws.items():
        tag = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(scenario_scalars(value, seen, tag))
        elif isinstance(value, bool | str):
            values = seen.setdefault(tag, set())
            values.add(str(value))
            for v in values:
                out[f"{tag}/{v}"] = 1.0 if v == str(value) else 0.0
        elif isinstance(value, int | float):
            out[tag] = float(value)
    return out


class EpisodeMetrics(BaseCallback):
    """Per finished episode: attainment, GPU-hours and every reward term."""

    def _on_training_start(self) -> None:
        self.sums = [dict.fromkeys(TERMS, 0.0) for _ in range(self.training_env.num_envs)]
        self.seen: dict[str, set[str]] = {}  # the drawn names of each choice so far

    def _on_step(self) -> bool:
        for i, (info, done) in enumerate(
            zip(self.locals["infos"], self.locals["dones"], strict=True)
        ):
            for k, v in info.get("reward_terms", {}).items():
                self.sums[i][k] = self.sums[i].get(k, 0.0) + v  # a wrapper may add terms
            if done and "episode" in info:
                ep = info["episode"]
                for key in MONITOR_KEYS:
                    if key in ep:
                        self.logger.record_mean(f"episode/{key}", float(ep[key]))
                for k, v in self.sums[i].items():
                    self.logger.record_mean(f"reward_terms/{k}", v)
                # a family's draws (the env repeats them in the episode's last info)
                draws = info.get("scenario", {}).get("draws", {})
                for tag, v in scenario_scalars(draws, self.seen).items():
                    self.logger.record_mean(tag, v)
                self.sums[i] = dict.fromkeys(TERMS, 0.0)
        return True


class Checkpoints(CheckpointCallback):
    """SB3's checkpoints, with the observation statistics also as ``.npz`` (loaded without
    unpickling: ``agents/model_files.py``)."""

    def _on_step(self) -> bool:
        ok = super()._on_step()
        if self.n_calls % self.save_freq == 0:
            vn = self.model.get_vec_normalize_env()
            if vn is not None:
                pkl = Path(self._checkpoint_path("vecnormalize_", extension="pkl"))
                ObsNormalizer.of(vn).save(pkl.with_name(normalizer_name(pkl.name)))
        return ok


def vecnormalize_of(model: Any) -> Any:
    """The model's ``VecNormalize`` wrapper, or None."""
    env = model.get_env()
    return env if isinstance(env, VecNormalize) else None


class EvalVsChiron(BaseCallback):
    """Every ``eval_freq`` steps: PPO (deterministic) and Chiron on the same seeds."""

    def __init__(
        self,
        out: Path,
        scenario: str,
        action_mode: str,
        eval_freq: int,
        eval_seeds: list[int],
        env_kwargs: dict[str, Any] | None,
        residual_step: int | None = None,
    ) -> None:
        super().__init__()
        self.out, self.eval_freq, self.eval_seeds = out, eval_freq, eval_seeds
        self.setup = (scenario, action_mode, env_kwargs)
        self.residual_step = residual_step

    def _episode(self, make_policy: Any, seed: int, series: bool = False) -> dict[str, Any]:
        scenario, action_mode, env_kwargs = self.setup
        return evaluation_episode(make_policy, scenario, action_mode, seed, env_kwargs, series)

    def _on_training_start(self) -> None:
        from agents import make_agent

        self.best = -np.inf
        self.chiron: list[dict[str, Any]] = []
        if self.eval_freq <= 0:  # no evaluations (Tune trials, B6): nothing to compare with
            return
        scenario, action_mode, env_kwargs = self.setup
        # Chiron computes instance changes: against a policy of target counts it plays in its own
        # mode (with its local loop), in every other mode in the policy's
        mode = "global" if action_mode == "target" else action_mode
        self.chiron = [
            evaluation_episode(lambda ctx: make_agent("chiron", ctx), scenario, mode, s, env_kwargs)
            for s in self.eval_seeds
        ]

    def _on_step(self) -> bool:
        if self.eval_freq <= 0 or self.n_calls % self.eval_freq:
            return True
        from agents.ppo import PPOAgent

        vn = vecnormalize_of(self.model)
        runs = [
            self._episode(
                lambda ctx: PPOAgent.from_model(self.model, vn, ctx, self.residual_step), s, j == 0
            )
            for j, s in enumerate(self.eval_seeds)
        ]
        ppo = float(np.mean([r["reward"] for r in runs]))
        chiron = float(np.mean([r["reward"] for r in self.chiron]))
        self.logger.record("eval/ppo_reward", ppo)
        self.logger.record("eval/chiron_reward", chiron)
        self.logger.record("eval/ppo_minus_chiron", ppo - chiron)
        self.logger.record(
            "eval/ppo_interactive_attainment",
            float(np.mean([r["interactive_attainment"] for r in runs])),
        )
        self.logger.record("eval/ppo_gpu_hours", float(np.mean([r["gpu_hours"] for r in runs])))
        fig = runs[0]["figure"]
        self.logger.record(
            "eval/episode", Figure(fig, close=True), exclude=("stdout", "log", "json", "csv")
        )
        if ppo > self.best:
            self.best = ppo
            self.model.save(self.out / "best_model.zip")
            if vn is not None:
                save_normalizer(vn, self.out / "best_vecnormalize.pkl")
        return True


class ProgressBar(BaseCallback):
    """A tqdm bar of the steps done."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def training_callbacks(
    out: Path,
    scenario: str,
    action_mode: str,
    eval_freq: int,
    eval_seeds: list[int],
    checkpoint_freq: int,
    env_kwargs: dict[str, Any] | None,
    residual_step: int | None = None,
) -> list[BaseCallback]:
    """The callbacks of one training run (frequencies already divided by the env count)."""
    cbs: list[BaseCallback] = [
        EpisodeMetrics(),
        EvalVsChiron(out, scenario, action_mode, eval_freq, eval_seeds, env_kwargs, residual_step),
    ]
    if checkpoint_freq > 0:
        cbs.append(
            Checkpoints(
                checkpoint_freq, str(out / "checkpoints"), name_prefix="ppo", save_vecnormalize=True
            )
        )
    return cbs


__all__ = [
    "MONITOR_KEYS",
    "TERMS",
    "EpisodeMetrics",
    "EvalVsChiron",
    "ProgressBar",
    "scenario_scalars",
    "training_callbacks",
    "vecnormalize_of",
]
