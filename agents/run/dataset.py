"""Offline datasets of the heuristic agents' trajectories, in Minari's format (``chiron dataset``).

One Minari dataset per agent, ``chiron/<source>-<agent>-v0``, under ``out`` (Minari's
``MINARI_DATASETS_PATH``): observations (the env's 57 features), the agent's actions (in the
action mode it runs in, e.g. Chiron's ``MultiDiscrete([33, 33, 33])`` instance changes), rewards,
terminations and truncations, collected by ``minari.DataCollector`` from
``gym.make("chiron_gym/Autoscale-v0", ...)`` so that the dataset records the environment's spec.
Episodes are the traffic seeds ``seed, seed + 1, ...`` of each scenario, or as many draws of a
family. ``action_space="target"`` records every agent's decisions in one action space, the
target mode's (``target_action``), so that datasets of different behaviours can be mixed.
A planning reference (``planner``, ``planner-forecast``, ``static-best``) is planned first and
its plan replayed under the collector (the replay must score the plan's reward); the hindsight
planner's episodes whose plans ran in other environment settings (its best base's) go to a
dataset of their own per setting, ``chiron/<source>-planner-<n>-<mode>-v0``.
``docs/datasets.md`` shows how to load one and train behaviour cloning on it
(``docs/examples/behaviour_cloning.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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


ACTION_SPACES = ("own", "target")


def target_action(
    before: dict[str, Any], after: dict[str, Any], max_caps: dict[str, int], max_target: int
) -> list[int]:
    """A decision in the target mode's terms, from the infos before and after it: per pool the
    count it asked for (the live count the agent saw plus the change applied, within
    ``[0, max_target]``), then the cap choice that takes the pool's cap before to the nearest of
    its cap after (exact for one pool-wide choice; for Chiron's per-instance local loop, the
    pool's rounded mean, an approximation). An absent pool: 0 and keep."""
    from agents.base import PoolView
    from chiron_gym.control.caps import CAP_CHOICES, KEEP, new_cap

    choices = range(len(CAP_CHOICES))
    applied = after["applied_deltas"]
    targets: list[int] = []
    caps: list[int] = []
    for name in max_caps:
        pool = PoolView.of(before["raw"], name)
        if not pool.exists:
            targets.append(0)
            caps.append(KEEP)
            continue
        targets.append(max(0, min(max_target, pool.live + applied.get(name, 0))))
        c0, c1 = before["batch_caps"][name], after["batch_caps"][name]
        caps.append(
            KEEP
            if c0 == c1
            else min(choices, key=lambda ch: (abs(new_cap(c0, ch, max_caps[name]) - c1), ch))
        )
    return targets + caps


def _target_callback(max_caps: dict[str, int], max_target: int) -> type[Any]:
    """A Minari step-data callback recording ``target_action`` in place of the agent's own."""
    from minari import StepDataCallback

    class TargetActions(StepDataCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.before: dict[str, Any] = {}  # the info of the observation the agent acted on

        def __call__(self, env: Any, **kwargs: Any) -> Any:
            data = super().__call__(env, **kwargs)
            info = kwargs["info"]
            if kwargs.get("action") is not None:
                data["action"] = np.asarray(
                    target_action(self.before, info, max_caps, max_target), dtype=np.int64
                )
            self.before = info
            return data

    return TargetActions


def collect(
    agents: list[str],
    sources: list[str],
    episodes: int,
    out: Path,
    *,
    seed: int = 0,
    horizon_s: float | None = None,
    progress: bool = True,
    action_space: str = "own",
) -> list[DatasetResult]:
    """Write one dataset per agent: ``episodes`` episodes of each of ``sources`` (scenarios, or
    a family such as ``family:train``, each episode a new draw), the actions in the agent's own
    action space or (``"target"``) in the target mode's, the same for every agent."""
    from tqdm import tqdm

    from agents.run.episode import env_kwargs_for
    from agents.spec import is_planner
    from chiron_gym.scenario import check_spec

    if episodes < 1:
        raise DatasetError(f"--episodes must be >= 1, got {episodes}")
    if action_space not in ACTION_SPACES:
        raise DatasetError(f"--action-space {action_space!r}: known: {', '.join(ACTION_SPACES)}")
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

    results = []
    total = len(agents) * len(sources) * episodes
    bar = tqdm(total=total, unit="episode", disable=not progress, dynamic_ncols=True)
    for agent in agents:
        extra = {"horizon_s": horizon_s} if horizon_s is not None else {}
        groups: dict[str, tuple[dict[str, Any], list[Run]]]
        if is_planner(agent):
            groups = _planned(agent, sources, episodes, seed, extra, bar)
        else:
            # a ppo:PATH's own settings too
            kwargs: dict[str, Any] = {**env_kwargs_for(agent), **extra}
            runs: list[Run] = [
                (s, seed + k, policy_for(agent, seed + k), None)
                for s in sources
                for k in range(episodes)
            ]
            groups = {"": (kwargs, runs)}
        named = {}
        for n, (kwargs, runs) in enumerate(groups.values()):
            did = ids[agent]
            if len(groups) > 1:  # the plans of some episodes ran in other settings
                did = f"{did[: -len('-v0')]}-{n}-{kwargs.get('action_mode', 'full')}-v0"
            if (out / did).exists():  # every one before any is written
                raise DatasetError(f"{out / did} exists already: remove it or choose another --out")
            named[did] = (kwargs, runs)
        for did, (kwargs, runs) in named.items():
            results.append(
                _record(
                    agent,
                    out,
                    did,
                    kwargs,
                    runs,
                    sources,
                    episodes,
                    seed,
                    horizon_s,
                    action_space,
                    bar,
                )
            )
    bar.close()
    return results


Run = tuple[
    str, int, "Callable[[AgentContext], Agent]", "float | None"
]  # source, seed, policy, plan's reward


def _planned(
    agent: str,
    sources: list[str],
    episodes: int,
    seed: int,
    extra: dict[str, Any],
    bar: Any,
) -> dict[str, tuple[dict[str, Any], list[Run]]]:
    """A planning reference's episodes (``planner``, ``planner-forecast``, ``static-best``):
    each plan made first, then replayed; grouped by the environment settings the plans were made
    in (the hindsight planner's best base may run in another action mode from seed to seed)."""
    import json
    from functools import partial

    from agents.plans import ReplayAgent
    from agents.run.tasks import plan_for
    from chiron_gym.envs.autoscale_v1 import is_disaggregated

    groups: dict[str, tuple[dict[str, Any], list[Run]]] = {}
    for source in sources:
        if is_disaggregated(source):
            raise DatasetError(
                f"{agent} plans the aggregated pools only, and {source!r} has prefill and decode "
                "pools"
            )
        for k in range(episodes):
            # the bar counts replays; the plans before them show as the description
            bar.set_description(f"planning {agent} on {source} ({k + 1} of {episodes})")
            made = plan_for(agent, source, seed + k, extra or None)
            key = json.dumps(made.env_kwargs, sort_keys=True)
            groups.setdefault(key, (dict(made.env_kwargs), []))[1].append(
                (source, seed + k, partial(ReplayAgent, plan=made), made.reward)
            )
    return groups


def _record(
    agent: str,
    out: Path,
    did: str,
    kwargs: dict[str, Any],
    runs: list[Run],
    sources: list[str],
    episodes: int,
    seed: int,
    horizon_s: float | None,
    action_space: str,
    bar: Any,
) -> DatasetResult:
    """Play ``runs`` in an environment of ``kwargs`` under Minari's collector; the dataset."""
    import gymnasium as gym
    from minari import DataCollector

    from agents.run.episode import play

    env = gym.make("chiron_gym/Autoscale-v0", scenario=sources[0], **kwargs)
    spec = env.spec
    recording: dict[str, Any] = {}
    if action_space == "target":
        # recorded as the target mode's actions; the dataset's environment is that mode's,
        # with the agent's step limit (so that a recorded count is one decision away)
        target_env = gym.make(
            "chiron_gym/Autoscale-v0", scenario=sources[0], **{**kwargs, "action_mode": "target"}
        )
        ctx = target_env.unwrapped.agent_context()  # type: ignore[attr-defined]
        max_caps = {n: b.max_batch_cap for n, b in ctx.pools.items()}
        top = int(target_env.unwrapped.layout.max_target)  # type: ignore[attr-defined]
        recording = {
            "step_data_callback": _target_callback(max_caps, top),
            "action_space": target_env.action_space,
        }
        spec = target_env.spec
        target_env.close()
    collector = DataCollector(env, data_format="arrow", **recording)
    try:
        for source, episode_seed, policy, planned in runs:
            bar.set_description(f"{agent} on {source}")
            run = play(collector, policy, episode_seed, options={"scenario": source})
            if planned is not None and run.reward != planned:
                raise RuntimeError(
                    f"{agent} on {source} seed {episode_seed}: the replayed plan scored "
                    f"{run.reward!r}, the planner's own evaluation {planned!r}"
                )
            bar.update()
        ds = collector.create_dataset(
            dataset_id=did,
            eval_env=spec,
            algorithm_name=agent,
            author="chiron-gym",
            description=(
                f"{agent} on {', '.join(sources)}: {episodes} episode(s) each, traffic seeds "
                f"{seed}-{seed + episodes - 1}"
                + (
                    f" ({len(runs)} of them here: those planned in these settings)"
                    if len(runs) != episodes * len(sources)
                    else ""
                )
                + (f", horizon {horizon_s} s" if horizon_s is not None else "")
                + (", actions in the target mode's space" if action_space == "target" else "")
                + " (chiron dataset)"
            ),
        )
    finally:
        collector.close()
    return DatasetResult(did, int(ds.total_episodes), int(ds.total_steps), out / did)


__all__ = [
    "ACTION_SPACES",
    "DatasetError",
    "DatasetResult",
    "collect",
    "dataset_id",
    "target_action",
]
