"""One episode of one agent: the loop every caller shares.

``play(env, make_policy, seed)`` is SB3's ``evaluate_policy`` for a single episode, keeping what a
comparison of autoscalers needs: the reward and each reward term summed, scale actions, the last
``info`` and, when asked, the time series behind the figures and TensorBoard runs. The agent is
built after ``reset`` from the environment's ``AgentContext``.

``run_episode(agent, scenario, seed)`` is the same for an agent named by its spec (``chiron``,
``ppo:PATH``, ``chiron[k=v]``), and returns the ``results.csv`` row (``agents/run/reporting.py``
writes the files). ``chiron evaluate``, PPO's evaluation callback, Ray Tune trials,
``llumnix-tuned``'s grid search and benchmark B4 all run their episodes here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from agents import make_agent
from agents.base import Agent
from agents.spec import env_kwargs_for
from chiron_gym.envs import AgentContext, AutoscaleEnv, Snapshot
from chiron_gym.envs.autoscale_v1 import make_env
from chiron_gym.sim import ALL_POOL_NAMES, CLASS_NAMES


@dataclass
class EpisodeRun:
    """What one played episode returns."""

    policy: Agent
    reward: float = 0.0
    reward_terms: dict[str, float] = field(default_factory=dict)  # each term summed
    steps: int = 0
    scale_actions: int = 0  # pool changes applied (a pool scaled in a step counts once)
    info: dict[str, Any] = field(default_factory=dict)  # the last step's
    series: dict[str, list[float]] = field(default_factory=dict)  # with ``record_series``
    raw: dict[str, list[float]] = field(default_factory=dict)  # with ``record_raw``: per step
    actions: list[npt.NDArray[np.int64]] = field(default_factory=list)  # as played


def series_point(info: dict[str, Any], reward: float) -> dict[str, float]:
    """One step's point of the episode's time series (the tags of ``reporting.TB_SCALARS``)."""
    raw = info["raw"]
    point: dict[str, float] = {"t": info["sim_time_s"]}
    # prefill and decode pools: in the disaggregated environment only
    for p in (p for p in ALL_POOL_NAMES if f"{p}.exists" in raw):
        point[f"cluster/instances_{p}"] = raw[f"{p}.ready"] + raw[f"{p}.starting"]
        point[f"cluster/batch_cap_{p}"] = raw[f"{p}.batch_cap"]
    if "prefill.prompt_tokens_queued" in raw:
        point["queue/prefill_prompt_tokens"] = raw["prefill.prompt_tokens_queued"]
        point["queue/kv_transfers"] = raw["prefill.transfers"]
    point["cluster/gpus"] = float(info["gpus"])
    for c in CLASS_NAMES:
        point[f"queue/{c}"] = raw[f"{c}.queue"]
    point["slo/interactive_ttft_p95_over_slo"] = raw["interactive.ttft_p95_over_slo"]
    point["slo/interactive_itl_p95_over_slo"] = raw["interactive.itl_p95_over_slo"]
    point["slo/batch_itl_p95_over_slo"] = raw["batch.itl_p95_over_slo"]
    point["slo/batch_wait_over_slack"] = raw["batch.wait_over_slack"]
    point["slo/interactive_attainment_window"] = raw["interactive.attainment"]
    point["reward/step"] = reward
    for term, v in info["reward_terms"].items():
        point[f"reward/{term}"] = v
    return point


def play(
    env: AutoscaleEnv | gym.Env[Any, Any],
    make_policy: Callable[[AgentContext], Agent],
    seed: int,
    *,
    deterministic: bool = True,
    record_series: bool = False,
    record_raw: tuple[str, ...] = (),
    options: dict[str, Any] | None = None,
) -> EpisodeRun:
    """Reset ``env`` with ``seed`` (and reset ``options``), build the policy for it, and step
    until the episode ends. ``env`` may be wrapped (e.g. by Minari's ``DataCollector``).
    ``record_raw`` names raw features (``info["raw"]``) to keep at every step."""
    obs, info = env.reset(seed=seed, options=options)
    ctx = cast(AutoscaleEnv, env.unwrapped).agent_context()
    run = EpisodeRun(make_policy(ctx), info=info)
    start = True
    done = False
    state: Any = None  # a recurrent policy's memory, carried from step to step
    while not done:
        action, state = run.policy.predict(
            obs, state=state, episode_start=np.array([start]), deterministic=deterministic
        )
        start = False
        run.actions.append(np.array(action, dtype=np.int64))
        obs, r, terminated, truncated, info = env.step(action)
        reward = float(r)
        run.steps += 1
        run.reward += reward
        for k, v in info["reward_terms"].items():
            run.reward_terms[k] = run.reward_terms.get(k, 0.0) + v
        run.scale_actions += sum(1 for d in info["applied_deltas"].values() if d)
        if record_series:
            for k, v in series_point(info, reward).items():
                run.series.setdefault(k, []).append(float(v))
        for name in record_raw:
            run.raw.setdefault(name, []).append(float(info["raw"][name]))
        done = terminated or truncated
    run.info = info
    return run


@dataclass
class Episode:
    """One evaluated episode: its ``results.csv`` row and its time series (and, for a planner
    to start from, its actions and the environment settings it was played in)."""

    row: dict[str, Any]
    series: dict[str, list[float]]
    wall_s: float
    actions: list[npt.NDArray[np.int64]] = field(default_factory=list)
    env_kwargs: dict[str, Any] = field(default_factory=dict)


def attainment_with_risk(report: Any, at_risk: int) -> float:
    """Met over requests whose fate is known, counting the ``at_risk`` pending ones (the env's
    ``info["at_risk"]``, overdue ones included) as misses."""
    known = report.met + report.late + report.rejected + at_risk
    return float(report.met / known) if known else 1.0


def run_episode(
    agent: str, scenario: str, seed: int, *, env_kwargs: dict[str, Any] | None = None
) -> Episode:
    """Run one episode of ``agent`` on ``scenario`` with traffic seed ``seed``; its row.

    A planning reference (``PLANNERS``: ``planner``, ``planner-forecast``, ``static-best``) is
    a plan, not a policy: ``agents/run/tasks.py``'s ``run_any`` plans it and plays the plan here
    (``episode_row``).
    """
    kwargs = env_kwargs_for(agent, env_kwargs)
    env = make_env(scenario, **kwargs)  # Autoscale-v1 for prefill and decode pools
    try:  # closed whatever happens: on the real backend, closing stops the servers
        ep = episode_row(env, agent, scenario, seed)
    finally:
        env.close()
    ep.env_kwargs = kwargs
    return ep


def episode_row(
    env: AutoscaleEnv,
    agent: str,
    scenario: str,
    seed: int,
    make_policy: Callable[[AgentContext], Agent] | None = None,
) -> Episode:
    t0 = time.perf_counter()
    build = make_policy or (lambda ctx: make_agent(agent, ctx, seed=seed))
    run = play(env, build, seed, record_series=True)
    info = run.info
    totals = {"slo_met_work": 0.0, "gpu_cost": 0.0, "violation": 0.0, "churn": 0.0, "at_risk": 0.0}
    totals.update(run.reward_terms)
    summary = env.backend.summary()
    horizon = env.scenario.horizon_s
    # Work still pending at the end counts as missed when it is past its SLO already or (batch)
    # the waiting-time estimate says it will miss its deadline, as the reward's ``at_risk`` term
    # charges it: deferring work past the horizon is not free.
    at_risk = info["at_risk"]
    met = sum(c.met for c in summary.values())
    met_tokens = totals["slo_met_work"] / max(env.reward_weights["slo_met_work"], 1e-12) * 1000.0
    gpu_hours = float(info["gpu_hours"])
    row: dict[str, Any] = {
        "agent": agent,
        "scenario": scenario,
        "seed": seed,
        "interactive_attainment": info["interactive_attainment"],
        "batch_attainment": attainment_with_risk(summary["batch"], at_risk["batch"]),
        "interactive_at_risk": at_risk["interactive"],
        "batch_at_risk": at_risk["batch"],
        "interactive_arrived": info["interactive_arrived"],
        "batch_arrived": info["batch_arrived"],
        "slo_met_requests": met,
        "gpu_hours": gpu_hours,
        "goodput_tokens_per_s": met_tokens / horizon,
        "gpu_hours_per_1k_met": gpu_hours / (met / 1000.0) if met else math.inf,
        "reward": run.reward,
        "reward_slo_met_work": totals["slo_met_work"],
        "reward_gpu_cost": totals["gpu_cost"],
        "reward_violation": totals["violation"],
        "reward_churn": totals["churn"],
        "reward_at_risk": totals["at_risk"],
        "scale_actions": run.scale_actions,
        "steps": run.steps,
    }
    params = getattr(run.policy, "params", None)
    row["_params"] = params() if callable(params) else {}
    return Episode(row, run.series, time.perf_counter() - t0, run.actions)


Action = npt.NDArray[np.int64]
Choose = Callable[[npt.NDArray[np.float32], int], Action]  # (observation, decision) -> action


@dataclass
class Track:
    """A trajectory played by ``play_track``: actions, per-decision rewards, snapshots, and the
    last step's ``info``."""

    actions: list[Action]
    rewards: list[float]
    snaps: dict[int, Snapshot]
    info: dict[str, Any] = field(default_factory=dict)


def play_track(
    env: AutoscaleEnv,
    choose: Choose,
    *,
    start: Snapshot | None,
    seed: int,
    snap_at: frozenset[int] = frozenset(),
    until: int | None = None,
) -> Track:
    """The loop for plans and forks (``agents/hindsight.py``): step ``env`` from a reset with
    ``seed`` (``start`` None) or from the snapshot ``start``, asking ``choose(obs, i)`` for the
    action of decision ``i``, to the episode's end or decision ``until``; snapshots are taken
    before the decisions in ``snap_at``."""
    if start is None:
        obs, _ = env.reset(seed=seed)
        i = 0
    else:
        obs, i = env.restore(start), start.steps
    out = Track([], [], {})
    done = False
    while not done and (until is None or i < until):
        if i in snap_at:
            out.snaps[i] = env.snapshot()
        action = np.asarray(choose(obs, i), dtype=np.int64)
        obs, r, term, trunc, out.info = env.step(action)
        out.actions.append(action)
        out.rewards.append(float(r))
        done = term or trunc
        i += 1
    return out


__all__ = [
    "Choose",
    "Episode",
    "EpisodeRun",
    "Track",
    "attainment_with_risk",
    "env_kwargs_for",
    "play",
    "play_track",
    "run_episode",
    "series_point",
]
