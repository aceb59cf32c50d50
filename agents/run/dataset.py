"""Offline datasets of the heuristic agents' trajectories, in Minari's format (``chiron dataset``).

One Minari dataset per agent, ``chiron/<source>-<agent>-v0``, under ``out`` (Minari's
``MINARI_DATASETS_PATH``): observations (the env's 57 features), the agent's actions (in the
action mode it runs in, e.g. Chiron's ``MultiDiscrete([33, 33, 33])`` instance changes), rewards,
terminations and truncations, collected by ``minari.DataCollector`` from
``gym.make("chiron_gym/Autoscale-v0", ...)`` so that the dataset records the environment's spec.
Episodes are the traffic seeds ``seed, seed + 1, ...`` of each scenario, or as many draws of a
family. ``docs/datasets.md`` shows how to load one and train behaviour cloning on it
(``docs/examples/behaviour_cloning.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chiron_gym.config import InputError

if TYPE_CHECKING:
    from agents.base import Agent
    from chiron_gym.envs import AgentContext


class DatasetError(InputError):
    """Bad dataset arguments."""


@dataclass(frozen=True)
class DatasetResult:
    """One dataset written."""

    dataset_id: str
    episodes: int
    steps: int
    path: Path


def dataset_id(source: str, agent: str) -> str:
    """``chiron/<source>-<agent>-v0`` with the characters Minari allows."""
    import re

    from agents.run.reporting import slug

    text = slug(f"{source}-{agent}").replace("_", "-").replace(".", "-").lower()
    return f"chiron/{re.sub('-+', '-', text).strip('-')}-v0"


def policy_for(agent: str, seed: int) -> Callable[[AgentContext], Agent]:
    """A constructor of ``agent`` for an environment's context (its seed bound now)."""
    from agents import make_agent

    return lambda ctx: make_agent(agent, ctx, seed=seed)


def collect(
    agents: list[str],
    sources: list[str],
    episodes: int,
    out: Path,
    *,
    seed: int = 0,
    horizon_s: float | None = None,
    progress: bool = True,
) -> list[DatasetResult]:
    """Write one dataset per agent: ``episodes`` episodes of each of ``sources`` (scenarios, or
    a family such as ``family:train``, each episode a new draw)."""
    import gymnasium as gym
    from tqdm import tqdm

    from agents.run.episode import env_kwargs_for, play
    from chiron_gym.scenario import check_spec

    if episodes < 1:
        raise DatasetError(f"--episodes must be >= 1, got {episodes}")
    if not agents:
        raise DatasetError("no agents given")
    if len(set(agents)) != len(agents):
        raise DatasetError(f"an agent is listed twice: {agents}")
    for s in sources:
        check_spec(s)  # its own message, before anything runs
    name = sources[0] if len(sources) == 1 else f"{len(sources)}-scenarios"
    ids = {a: dataset_id(name.removeprefix("family:"), a) for a in agents}
    for did in ids.values():  # before any episode runs: Minari refuses to overwrite
        if (out / did).exists():
            raise DatasetError(f"{out / did} exists already: remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = str(out.resolve())
    from minari import DataCollector

    results = []
    total = len(agents) * len(sources) * episodes
    bar = tqdm(total=total, unit="episode", disable=not progress, dynamic_ncols=True)
    for agent in agents:
        kwargs: dict[str, Any] = dict(env_kwargs_for(agent))  # a ppo:PATH's own settings too
        if horizon_s is not None:
            kwargs["horizon_s"] = horizon_s
        env = gym.make("chiron_gym/Autoscale-v0", scenario=sources[0], **kwargs)
        collector = DataCollector(env, data_format="arrow")
        for source in sources:
            for k in range(episodes):
                bar.set_description(f"{agent} on {source}")
                play(collector, policy_for(agent, seed + k), seed + k, options={"scenario": source})
                bar.update()
        did = ids[agent]
        ds = collector.create_dataset(
            dataset_id=did,
            eval_env=env.spec,
            algorithm_name=agent,
            author="chiron-gym",
            description=(
                f"{agent} on {', '.join(sources)}: {episodes} episode(s) each, traffic seeds "
                f"{seed}-{seed + episodes - 1}"
                + (f", horizon {horizon_s} s" if horizon_s is not None else "")
                + " (chiron dataset)"
            ),
        )
        collector.close()
        results.append(DatasetResult(did, int(ds.total_episodes), int(ds.total_steps), out / did))
    bar.close()
    return results


__all__ = ["DatasetError", "DatasetResult", "collect", "dataset_id"]
