"""For the tests of learned agents: their demonstrations recorded, and one ``default`` episode
played by an agent spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents import make_agent
from agents.run.dataset import collect
from agents.spec import env_kwargs_for
from chiron_gym.control.chiron import POOL_NAMES
from chiron_gym.envs import AutoscaleEnv

HORIZON_S = 120.0


def record_demonstrations(out: Path) -> Path:
    """Into ``out``: static's decisions on 4 seeds of ``default`` in the target space
    (``chiron/default-static-v0``, 48 steps: one action) and Chiron's on 2 in its own space
    (``chiron/default-chiron-v0``, which the learners must refuse)."""
    collect(
        ["static"], ["default"], 4, out, horizon_s=HORIZON_S, progress=False, action_space="target"
    )
    collect(["chiron"], ["default"], 2, out, horizon_s=HORIZON_S, progress=False)
    return out


def play(agent: str, seed: int) -> tuple[list[list[int]], float]:
    """The actions ``agent`` takes on ``default`` (``HORIZON_S``) at ``seed``, and its reward."""
    env = AutoscaleEnv("default", horizon_s=HORIZON_S, **env_kwargs_for(agent))
    obs, _ = env.reset(seed=seed)
    policy = make_agent(agent, env.agent_context(), seed=seed)
    actions, total, done = [], 0.0, False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)
        actions.append([int(a) for a in np.asarray(action)])
        obs, r, term, trunc, _ = env.step(action)
        total += float(r)
        done = term or trunc
    return actions, total


def static_target_action(seed: int) -> list[int]:
    """Static's decision in the target mode: the pools' initial counts, every cap kept."""
    env = AutoscaleEnv("default", horizon_s=HORIZON_S, action_mode="target")
    _, info = env.reset(seed=seed)
    live = [round(info["raw"][f"{n}.ready"] + info["raw"][f"{n}.starting"]) for n in POOL_NAMES]
    return [*live, 1, 1, 1]
