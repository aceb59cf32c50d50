"""Behaviour cloning into a PPO model (``chiron train bc``; issue 43, item 2).

Reads ``chiron dataset --action-space target`` datasets (Minari; one action space for every
teacher), and fits a fresh SB3 model of the algorithm ``chiron train ppo`` would build for the
same scenario (``MaskablePPO`` or ``PPO``, the network of the algorithm's zoo file):

- the policy by maximum likelihood of the recorded actions (the sum of the per-head
  cross-entropies of the ``MultiDiscrete`` target action);
- the value head to the recorded discounted returns, divided by their standard deviation (the
  scale ``VecNormalize`` gives rewards), so that PPO fine-tuning does not start from a critic
  that knows nothing;
- the observation statistics (``VecNormalize``'s mean and variance) from the recorded
  observations.

It writes what ``chiron train ppo`` writes (``model.zip``, ``vecnormalize.npz``, ``train.json``
with a ``bc`` record: datasets, epochs, held-out accuracy per action head beside the majority
class), so ``ppo:OUT`` plays the clone and ``chiron train ppo --init OUT`` fine-tunes it. The
clone runs in its teacher's environment settings (the dataset's step limit ``k``); a fine-tuning
run that starts from it inherits them.

The student sees the observation only: whatever the teacher knew beyond it (Chiron's windows
and timers, a planner's view of the future traffic) it can learn only as far as the observation
predicts it, and it is scored on traffic seeds and scenarios the datasets did not hold.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.model_files import ObsNormalizer, TrainError

CLIP_OBS = 10.0  # VecNormalize's defaults, so that the clone normalises as PPO's runs do
EPSILON = 1e-8


@dataclass
class Demonstrations:
    """Every step of the datasets, episodes kept apart for the held-out split."""

    obs: list[npt.NDArray[np.float32]]  # per episode, the observation each action was taken on
    actions: list[npt.NDArray[np.int64]]
    rewards: list[npt.NDArray[np.float64]]
    nvec: list[int]
    env_kwargs: dict[str, Any]  # the datasets' evaluation environment (scenario, mode, k)
    sources: list[dict[str, Any]]  # per dataset: id, teacher, episodes, steps

    @property
    def steps(self) -> int:
        return sum(len(a) for a in self.actions)

    @property
    def settings(self) -> dict[str, Any]:
        """The datasets' environment settings beside their scenario and action mode."""
        return {k: v for k, v in self.env_kwargs.items() if k not in ("scenario", "action_mode")}

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        """``TrainError`` naming the datasets unless the environment's spaces are theirs."""
        names = ", ".join(str(src["dataset"]) for src in self.sources)
        width = int(self.obs[0].shape[1])
        if tuple(observation_space.shape) != (width,):
            raise TrainError(
                f"the datasets' observations have {width} features, the environment's "
                f"{observation_space.shape}: record them again with this release ({names})"
            )
        nvec = [int(n) for n in action_space.nvec]
        if nvec != self.nvec:
            raise TrainError(
                f"the datasets' actions are {self.nvec}, the environment's {nvec} (another "
                f"max_target?): record them again with these settings ({names})"
            )


def _discounted(rewards: npt.NDArray[np.float64], gamma: float) -> npt.NDArray[np.float64]:
    out = np.zeros(len(rewards))
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out


def load_demonstrations(data: Path, dataset_ids: list[str]) -> Demonstrations:
    """The datasets' steps; they must share the observation and action spaces (the target
    space: ``chiron dataset --action-space target``)."""
    os.environ["MINARI_DATASETS_PATH"] = str(data.resolve())
    import minari

    from agents.spec import acting

    demo: Demonstrations | None = None
    for did in dataset_ids:
        if not (data / did).is_dir():
            raise TrainError(
                f"{data / did}: no dataset here (make one: chiron dataset --out {data})"
            )
        ds = minari.load_dataset(did)
        meta = ds.storage.metadata
        spec = json.loads(meta.get("eval_env_spec") or meta["env_spec"])
        kwargs = dict(spec.get("kwargs") or {})
        if kwargs.get("action_mode") != "target":
            raise TrainError(
                f"{data / did}: its actions are in the {kwargs.get('action_mode', 'full')!r} "
                "mode's space; chiron train bc and chiron train offline read the target "
                "space (chiron dataset --action-space target), one space for every teacher"
            )
        nvec = [int(n) for n in ds.spec.action_space.nvec]
        if demo is None:
            demo = Demonstrations([], [], [], nvec, kwargs, [])
        if nvec != demo.nvec or kwargs.get("scenario") != demo.env_kwargs.get("scenario"):
            raise TrainError(
                f"{data / did}: action space {nvec} on {kwargs.get('scenario')!r}, the first "
                f"dataset's {demo.nvec} on {demo.env_kwargs.get('scenario')!r}: datasets "
                "trained on together share their scenario (or family) and action space"
            )
        if acting(kwargs) != acting(demo.env_kwargs):
            warnings.warn(
                f"{data / did}: recorded with acting settings {acting(kwargs)}, the first "
                f"dataset with {acting(demo.env_kwargs)}: the clone acts in the first's",
                stacklevel=2,
            )
        n0 = demo.steps
        episodes = 0
        for ep in ds.iterate_episodes():
            demo.obs.append(np.asarray(ep.observations[:-1], dtype=np.float32))
            demo.actions.append(np.asarray(ep.actions, dtype=np.int64))
            demo.rewards.append(np.asarray(ep.rewards, dtype=np.float64))
            episodes += 1
        demo.sources.append(
            {
                "dataset": did,
                "teacher": meta.get("algorithm_name"),
                "episodes": episodes,
                "steps": demo.steps - n0,
            }
        )
    if demo is None or demo.steps == 0:
        raise TrainError("no steps in the datasets given")
    return demo


@dataclass(frozen=True)
class CloneResult:
    out: Path
    steps: int
    wall_s: float
    accuracy: list[float]  # per action head, on the held-out episodes (training ones if none)
    majority: list[float]  # the majority class's accuracy on the same steps
    held_out_episodes: int


def clone(
    data: Path,
    dataset_ids: list[str],
    out: Path,
    *,
    algo: str = "maskable-ppo",
    epochs: int = 30,
    seed: int = 0,
    held_out: float = 0.1,
    hyperparams: Path | None = None,
    progress: bool = True,
) -> CloneResult:
    """Clone the teachers of ``dataset_ids`` (in ``data``) into a fresh ``algo`` model at
    ``out``; the last ``held_out`` share of each dataset's episodes scores it."""
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from agents.ppo import algo_class
    from agents.train.ppo import HYPERPARAM_DIR, PPO_KEYS, check_scenario, env_factory
    from agents.train.ppo import load_hyperparams as zoo

    if epochs < 1:
        raise TrainError(f"--epochs must be >= 1, got {epochs}")
    if not 0.0 <= held_out < 1.0:
        raise TrainError(f"--held-out must be in [0, 1), got {held_out}")
    if algo == "recurrent-ppo":
        raise TrainError(
            "--algo recurrent-ppo: cloning fits a feed-forward policy (ppo, maskable-ppo)"
        )
    cls = algo_class(algo)
    t0 = time.perf_counter()
    demo = load_demonstrations(data, dataset_ids)
    scenario = str(demo.env_kwargs["scenario"])
    hp = zoo(check_scenario(scenario), hyperparams or HYPERPARAM_DIR / f"{algo}.yml")
    if not hp.get("normalize", True):
        raise TrainError(
            f"{scenario}: its hyperparameters say normalize: false; a clone is trained on "
            "normalised observations (VecNormalize's), as chiron train ppo's runs are"
        )
    gamma = float(hp.get("gamma", 0.99))
    env_kwargs = demo.settings

    # the held-out episodes: the last ones of each dataset (at least one where it has two)
    train_i: list[int] = []
    held_i: list[int] = []
    start = 0
    for src in demo.sources:
        n = int(src["episodes"])
        k = min(n - 1, max(1, round(held_out * n))) if n > 1 and held_out > 0 else 0
        train_i += range(start, start + n - k)
        held_i += range(start + n - k, start + n)
        start += n
    scored = held_i or train_i  # none held out: the accuracy is the training episodes'

    def stack(idx: list[int]) -> tuple[Any, Any, Any]:
        return (
            np.concatenate([demo.obs[i] for i in idx]),
            np.concatenate([demo.actions[i] for i in idx]),
            np.concatenate([_discounted(demo.rewards[i], gamma) for i in idx]),
        )

    x, y, g = stack(train_i)
    xh, yh, _ = stack(scored)
    norm = ObsNormalizer(
        x.astype(np.float64).mean(axis=0), x.astype(np.float64).var(axis=0), CLIP_OBS, EPSILON
    )
    scale = float(np.std(g)) or 1.0

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    venv = DummyVecEnv([env_factory(scenario, "target", env_kwargs, None, 0.0, None, False)])
    tb: Any = None
    try:
        demo.check_spaces(venv.observation_space, venv.action_space)
        kwargs = {k: v for k, v in hp.items() if k in PPO_KEYS}
        policy_name = str(hp.get("policy", "MlpPolicy"))
        model = cls(policy_name, venv, seed=seed, verbose=0, device="cpu", **kwargs)
        policy = model.policy
        opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
        xt = torch.as_tensor(norm.normalize_obs(x))
        yt = torch.as_tensor(y)
        gt = torch.as_tensor(g / scale, dtype=torch.float32)
        xht = torch.as_tensor(norm.normalize_obs(xh))
        batch = int(np.clip(len(xt) // 8, 16, 256))  # small data: small batches
        tb = SummaryWriter(str(out / "tb" / "bc"))
        accuracy: list[float] = []
        bar = tqdm(range(epochs), unit="epoch", disable=not progress, dynamic_ncols=True)
        for epoch in bar:
            total = 0.0
            for idx in torch.split(torch.randperm(len(xt)), batch):
                values, log_prob, _ = policy.evaluate_actions(xt[idx], yt[idx])
                value_loss = torch.nn.functional.mse_loss(values.flatten(), gt[idx])
                loss = -log_prob.mean() + 0.5 * value_loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            with torch.no_grad():  # the action deterministic play takes (no masks, as PPOAgent)
                acted = policy.get_distribution(xht).get_actions(deterministic=True).numpy()
            accuracy = [float((acted[:, i] == yh[:, i]).mean()) for i in range(yh.shape[1])]
            tb.add_scalar("bc/loss", total / len(xt), epoch)
            tb.add_scalar("bc/held_out_accuracy", float(np.mean(accuracy)), epoch)
            bar.set_postfix(loss=f"{total / len(xt):.3f}", accuracy=f"{np.mean(accuracy):.3f}")
        majority = [
            float((yh[:, i] == np.bincount(y[:, i]).argmax()).mean()) for i in range(y.shape[1])
        ]
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.zip")
        norm.save(out / "vecnormalize.npz")
    finally:
        if tb is not None:
            tb.close()
        venv.close()
    wall = time.perf_counter() - t0
    record = {
        "scenario": scenario,
        "seed": seed,
        "algo": algo,
        "action_mode": "target",
        "env_kwargs": env_kwargs,
        "residual": None,
        "residual_step": None,
        "residual_penalty": None,
        "n_envs": 0,
        "timesteps": 0,  # no environment step: what it learned from is ``bc``
        "wall_s": round(wall, 1),
        "steps_per_s": None,
        "hyperparams": hp,
        "bc": {
            "datasets": demo.sources,
            "steps": demo.steps,
            "train_steps": len(x),  # its statistics' (a fine-tune counts them as ``steps``)
            "epochs": epochs,
            "held_out_episodes": len(held_i),
            "accuracy_on": "held-out episodes" if held_i else "training episodes (none held out)",
            "accuracy": [round(a, 4) for a in accuracy],
            "majority_class_accuracy": [round(a, 4) for a in majority],
            "return_scale": scale,
            "gamma": gamma,
        },
    }
    (out / "train.json").write_text(json.dumps(record, indent=1) + "\n")
    return CloneResult(out, demo.steps, wall, accuracy, majority, len(held_i))


__all__ = ["CloneResult", "Demonstrations", "clone", "load_demonstrations"]
