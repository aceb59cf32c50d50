"""``planner-forecast``: model-predictive control on a forecast of arrivals from the past.

The practical counterpart of the hindsight ``planner`` (``agents/hindsight.py``): the same
search, corrections of one instance more or fewer of a pool around a base policy (Chiron,
``BASE``), but made without the episode's future traffic. At the start of each of the planner's
blocks (``BLOCKS`` per episode) it

1. forecasts the next ``HORIZON_BLOCKS`` blocks' arrivals from what has arrived so far
   (``forecast``): the same span of the past again, arrival for arrival (a naive forecast that
   keeps the traffic's rate, bursts and request sizes; a bulk submission, requests sharing one
   arrival instant, is not repeated). Requests in flight lend the copies their output lengths,
   which stand for the length distribution an operator estimates from its history: copies of
   finished requests alone would be biased short exactly when the cluster is overloaded (long
   requests finish last), and the forecast would show no overload (measured: on
   ``lp-h100-70b-5``, seed 0, forks of such a forecast saw no backlog while the true episode's
   interactive attainment was 0.15);
2. forks the episode (``AutoscaleEnv.snapshot``), replaces its future arrivals by the forecast
   (``Backend.replace_future``) and plays each candidate there: the base policy in closed loop,
   its first action as it is or with one instance more or fewer of one pool. The backlog a
   candidate leaves at the fork's end is charged as the episode's end is (the ``at_risk`` term:
   requests past their SLO already, batch work predicted late);
3. plays the candidate with the best forecast reward (the base's own action unless a change
   beats it) for one block of the true episode, and moves on.

Every candidate sees the same forecast, so they differ by their actions alone; the base
policy's state is copied into each fork. It could run beside a deployment with a simulator
calibrated on it; it is not an agent of ``make_agent`` because it needs the environment itself,
to fork. Its cost per decision is ``Plan.wall_s`` over its decisions; ``Plan.kept`` counts the
blocks where it changed the base's action.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np

from agents.base import Agent, Observation
from agents.plans import BLOCKS, EPS, Action, Plan, corrected
from agents.run.episode import Choose, Track, play_track
from agents.spec import env_kwargs_for, make_agent
from chiron_gym.backends import Backend
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.envs.actions import ActionLayout
from chiron_gym.sim import POOL_NAMES, Workload

HORIZON_BLOCKS = 2  # blocks each candidate is played for on the forecast
BASE = "chiron"  # the policy it corrects


def forecast(backend: Backend, horizon_s: float) -> Workload:
    """Arrivals for the next ``horizon_s`` seconds: the last ``horizon_s`` seconds' arrivals
    again, in the same order and spacing (the past repeated when it is shorter), bulk submissions
    (requests sharing one arrival instant) left out; each copy's deadline as long after its
    arrival as the original's. Empty before any history."""
    now = backend.now
    period = min(horizon_s, now)
    if period <= 0:
        return Workload.concat([])
    past, _ = backend.arrived_since(now - period)
    _, first, counts = np.unique(past.arrival_s, return_index=True, return_counts=True)
    single = np.sort(first[counts == 1])
    single = single[past.arrival_s[single] < now]  # those at ``now`` are the next period's too
    copies = []
    for m in range(1, math.ceil(horizon_s / period) + 1):
        shifted = past.arrival_s[single] + m * period
        keep = single[shifted <= now + horizon_s]
        copies.append((keep, m * period))
    rows = np.concatenate([k for k, _ in copies]).astype(np.intp)
    shift = np.concatenate([np.full(len(k), d) for k, d in copies])
    return Workload.from_columns(
        arrival_s=past.arrival_s[rows] + shift,
        klass=past.klass[rows],
        prompt_tokens=past.prompt_tokens[rows],
        output_tokens=past.output_tokens[rows],
        deadline_s=past.deadline_s[rows] + shift,
        prefix_blocks=None
        if past.prefix_blocks is None
        else tuple(past.prefix_blocks[r] for r in rows.tolist()),
        prefix_block_tokens=past.prefix_block_tokens,
    )


def _base_choose(
    policy: Agent, memory: list[Any], layout: ActionLayout, pool: int | None, sign: int
) -> Choose:
    """``choose`` for ``play_track``: ``policy`` in closed loop (a recurrent one's state carried
    in ``memory``), its first action corrected."""
    first: list[int] = []

    def choose(obs: Observation, i: int) -> Action:
        action, memory[0] = policy.predict(
            obs, state=memory[0], episode_start=np.array([i == 0]), deterministic=True
        )
        action = np.asarray(action, dtype=np.int64)
        if first:
            return action
        first.append(i)
        out = action if pool is None else corrected(layout, action, pool, sign)
        return action if out is None else out

    return choose


def forecast_plan(
    scenario: str,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    *,
    base: str = BASE,
    blocks: int = BLOCKS,
    horizon: int = HORIZON_BLOCKS,
) -> Plan:
    """``planner-forecast``'s episode for ``scenario`` with traffic ``seed`` (module docstring),
    in ``base``'s environment settings with the caller's ``env_kwargs`` on top."""
    t0 = time.perf_counter()
    kwargs = env_kwargs_for(base, env_kwargs)
    env = AutoscaleEnv(scenario, **kwargs)
    try:
        env.reset(seed=seed)
        ctx = env.agent_context()
        policy = make_agent(base, ctx, seed=seed)
        # what a fork's copy of the base shares, unchanged: its static facts and the scenario
        # (whose arrivals would otherwise be copied for every fork)
        static = {id(ctx): ctx, id(ctx.scenario): ctx.scenario}
        memory: list[Any] = [None]  # a recurrent base's state between decisions
        layout = env.layout
        n = math.ceil(env.scenario.horizon_s / env.scenario.decision_interval_s - 1e-9)
        block = max(1, math.ceil(n / blocks))
        exists = ctx.pools
        changes: list[tuple[int | None, int]] = [(None, 0)]  # the base's own action first
        if layout.has_global:
            changes += [
                (k, sign)
                for k, name in enumerate(POOL_NAMES)
                if exists[name].exists
                for sign in (1, -1)
            ]
        violation = env.reward_weights["violation"]
        horizon_s = horizon * block * env.scenario.decision_interval_s
        track = Track([], [], {})
        simulated = kept = i = 0
        while i < n:
            here = env.snapshot()  # the true episode, to go on from once a change is chosen
            best = changes[0]
            if env.backend.now > 0:  # before any history there is nothing to forecast from
                env.backend.replace_future(forecast(env.backend, horizon_s))
                fork, best_reward = env.snapshot(), -math.inf
                for change in changes:
                    twin = copy.deepcopy((policy, memory), dict(static))  # this fork's base
                    out = play_track(
                        env,
                        _base_choose(*twin, layout, *change),
                        start=fork,
                        seed=seed,
                        until=i + horizon * block,
                    )
                    simulated += len(out.rewards)
                    reward = sum(out.rewards)
                    if i + len(out.rewards) < n:  # the episode's end charges its own backlog
                        # the backlog left at the fork's end, charged as the episode's end is
                        reward -= violation * sum(out.info.get("at_risk", {}).values())
                    if reward > best_reward + EPS:
                        best, best_reward = change, reward
            kept += best != changes[0]
            out = play_track(
                env,
                _base_choose(policy, memory, layout, *best),
                start=here,
                seed=seed,
                until=i + block,
            )
            track.actions += out.actions
            track.rewards += out.rewards
            i += len(out.actions)
            if not out.actions:
                break
    finally:
        env.close()
    return Plan(
        "planner-forecast",
        base,
        kwargs,
        track.actions,
        sum(track.rewards),
        time.perf_counter() - t0,
        simulated + len(track.actions),
        kept,
    )


__all__ = ["BASE", "HORIZON_BLOCKS", "forecast", "forecast_plan"]
