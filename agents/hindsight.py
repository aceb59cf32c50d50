"""Hindsight references: plans made knowing the episode's own future, by forking the simulator.

Two references bound what any autoscaler could do on an episode (a scenario and a traffic seed):

- ``static-best``: the best fixed allocation in hindsight. Each pool is sent to a target instance
  count at the start (at most the step limit per decision, as any agent) and held there; the
  targets are searched by coordinate descent on the episode's reward, each candidate a whole
  episode on the same traffic.
- ``planner``: model-predictive search over the episode's actions with the true future. It starts
  from the best episode of its bases (``static-best``, ``planner-forecast``, the rule agents and
  the shipped PPO models by default: the agents a table compares), then, block by block in time
  order, forks the simulator (``AutoscaleEnv.snapshot``) and tries one more or one fewer instance
  of each pool for one block or for the rest of the episode; a change is screened on the next two
  blocks' reward and kept if the whole episode's reward rises. It never returns a plan worse than
  its best base, so a table whose agents are among its bases cannot show an agent above it.

Neither is an agent one could deploy: each knows its episode's traffic before it starts. A plan
is an open-loop list of actions with the environment settings it was made in; ``run_any``
replays it in a fresh environment, scored as every agent is (the replay's reward equals the
plan's, the simulator being deterministic). ``Plan.wall_s`` over ``Plan.decisions`` is the
planner's cost per decision (``docs/benchmark.md``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Observation
from agents.baselines import BASELINES
from agents.forecast import forecast_plan
from agents.plans import BLOCKS, EPS, Action, Plan, corrected, load_given
from agents.run.episode import Choose, Track, play_track
from agents.spec import env_kwargs_for, is_planner, make_agent, portable
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.envs.actions import ActionLayout
from chiron_gym.sim import POOL_NAMES, POOLS

# every rule agent (``random`` with the episode's seed, as a table plays it)
RULE_BASES = ("chiron", *BASELINES, "llumnix-tuned")
MODELS = Path(__file__).resolve().parent / "models"
SHIPPED_MODELS = ("ppo-general", "ppo-general-direct", "ppo-default")
FULL_TRIES = 2  # changes per block evaluated to the episode's end (the best screened ones)


def ceiling_spec(agents: list[str]) -> str:
    """The planner's spec for a table of ``agents``: those not among its default bases (nor
    planning references) added to them, so that no agent of the table is above the ceiling."""
    known = set(default_bases())
    extra = [a for a in agents if portable(a) not in known and not is_planner(a)]
    return f"planner[also={'|'.join(extra)}]" if extra else "planner"


def default_bases() -> tuple[str, ...]:
    """``static-best``, ``planner-forecast``, the rule agents, and the shipped PPO models found
    on disk."""
    models = tuple(f"ppo:{MODELS / m}" for m in SHIPPED_MODELS if (MODELS / m).is_dir())
    return ("static-best", "planner-forecast", *RULE_BASES, *models)


def _from(actions: list[Action], offset: int) -> Choose:
    """``choose`` for ``_play``: ``actions`` in order, the first one at decision ``offset``."""
    return lambda obs, i: actions[i - offset]


def _closed_loop(spec: str, scenario: str, seed: int, extra: dict[str, Any] | None) -> Track:
    env = AutoscaleEnv(scenario, **env_kwargs_for(spec, extra))
    try:
        env.reset(seed=seed)
        policy = make_agent(spec, env.agent_context(), seed=seed)
        memory: list[Any] = [None]  # a recurrent policy's state, carried as ``play`` does

        def choose(obs: Observation, i: int) -> Action:
            action, memory[0] = policy.predict(
                obs, state=memory[0], episode_start=np.array([i == 0]), deterministic=True
            )
            return np.asarray(action)

        return play_track(env, choose, start=None, seed=seed)
    finally:
        env.close()


# ------------------------------------------------------------------------------ static-best


def _targets_track(env: AutoscaleEnv, seed: int, targets: dict[str, int]) -> Track:
    layout = env.layout

    def choose(obs: Observation, i: int) -> Action:
        deltas = []
        for pool, name in zip(POOLS, POOL_NAMES, strict=True):
            live = env.backend.pool_state(pool).live
            d = targets.get(name, live) - live
            deltas.append(max(-layout.k, min(layout.k, d)))
        return layout.join(deltas, None)

    return play_track(env, choose, start=None, seed=seed)


def static_best(scenario: str, seed: int, env_kwargs: dict[str, Any] | None = None) -> Plan:
    """The fixed allocation with the best reward on this episode (coordinate descent), in the
    environment ``static`` runs in with the caller's ``env_kwargs`` on top."""
    t0 = time.perf_counter()
    kwargs = env_kwargs_for("static", env_kwargs)
    env = AutoscaleEnv(scenario, **kwargs)
    try:
        env.reset(seed=seed)
        ctx = env.agent_context()
        bounds = {n: b for n, b in ctx.pools.items() if b.exists}
        current = {
            n: env.backend.pool_state(p).live
            for p, n in zip(POOLS, POOL_NAMES, strict=True)
            if n in bounds
        }
        seen: dict[tuple[int, ...], Track] = {}  # every allocation tried, by its counts

        def score(t: dict[str, int]) -> float:
            key = tuple(t[n] for n in bounds)
            if key not in seen:
                seen[key] = _targets_track(env, seed, t)
            return sum(seen[key].rewards)

        best = score(current)
        improved = True
        while improved:
            improved = False
            for name, b in bounds.items():
                for step in (1, -1):
                    while b.min_instances <= current[name] + step <= b.max_instances:
                        trial = {**current, name: current[name] + step}
                        r = score(trial)
                        if r <= best + EPS:
                            break
                        best, current, improved = r, trial, True
        track = seen[tuple(current[n] for n in bounds)]
    finally:
        env.close()
    return Plan(
        "static-best",
        f"static-best{current}",
        kwargs,
        track.actions,
        sum(track.rewards),
        time.perf_counter() - t0,
        sum(len(t.actions) for t in seen.values()),
    )


# ------------------------------------------------------------------------------ planner


def _changed(
    layout: ActionLayout, actions: list[Action], i: int, pool: int, sign: int, length: int | None
) -> list[Action] | None:
    """``actions`` from ``i`` on with one instance more (``sign`` 1) or fewer of ``pool`` from
    decision ``i``, for ``length`` decisions (None: to the end); None if outside the step limit.
    Changes are one decision's, undone ``length`` decisions later; targets (the target mode's
    counts) are moved for each of the ``length`` decisions."""
    out = [a.copy() for a in actions[i:]]
    if length is not None and length >= len(out):
        return None  # the same change as for the rest of the episode (tried as such)
    if layout.targets:
        for t in range(len(out) if length is None else length):
            target = corrected(layout, out[t], pool, sign)
            if target is None:
                return None
            out[t] = target
        return out
    for j, s in ((0, sign), (length, -sign)):
        if j is None or j >= len(out):
            continue
        changed = corrected(layout, out[j], pool, s)
        if changed is None:
            return None
        out[j] = changed
    return out


def _best_base(
    scenario: str,
    seed: int,
    bases: tuple[str, ...],
    env_kwargs: dict[str, Any] | None,
    given: Path | None = None,
) -> tuple[str, list[Action], dict[str, Any], dict[str, float], int, int]:
    """The base with the best reward: its name, actions and settings; every base's reward; the
    decisions simulated; the bases whose episode was ``given`` (``load_given``)."""
    rewards: dict[str, float] = {}
    best: tuple[str, list[Action], dict[str, Any]] | None = None
    simulated = handed = 0
    for spec in bases:
        kept = None if given is None else load_given(given, spec, scenario, seed)
        if kept is not None:
            actions, reward, kwargs = kept
            handed += 1
        elif spec in ("static-best", "planner-forecast"):
            made = (static_best if spec == "static-best" else forecast_plan)(
                scenario, seed, env_kwargs
            )
            simulated += made.simulated_decisions
            actions, reward, kwargs = made.actions, made.reward, made.env_kwargs
        else:
            track = _closed_loop(spec, scenario, seed, env_kwargs)
            simulated += len(track.actions)
            actions, reward = track.actions, sum(track.rewards)
            kwargs = env_kwargs_for(spec, env_kwargs)
        if best is None or reward > rewards[best[0]] + EPS:
            best = (spec, actions, kwargs)
        rewards[spec] = reward
    if best is None:
        raise ValueError("the planner needs at least one base")
    return (*best, rewards, simulated, handed)


class _Search:
    """The planner's search around an incumbent episode, in one environment (module docstring)."""

    def __init__(
        self, env: AutoscaleEnv, seed: int, actions: list[Action], blocks: int, tries: int
    ) -> None:
        self.env, self.seed, self.tries = env, seed, tries
        n = len(actions)
        self.block = max(1, math.ceil(n / blocks))
        self.starts = sorted(range(0, n, self.block))
        # the incumbent again, open loop: its rewards per decision, and the snapshot at the first
        # block (``advance`` takes each next one: one held at a time)
        self.track = play_track(
            env, _from(actions, 0), start=None, seed=seed, snap_at=frozenset({0})
        )
        self.simulated = n
        self.kept = 0
        exists = env.agent_context().pools
        # an agent of caps only leaves the search nothing to change
        self.pools = [
            k for k, name in enumerate(POOL_NAMES) if exists[name].exists and env.layout.has_global
        ]

    def _rollout(self, i: int, actions: list[Action], **kw: Any) -> Track:
        out = play_track(
            self.env, _from(actions, i), start=self.track.snaps[i], seed=self.seed, **kw
        )
        self.simulated += len(out.rewards)
        return out

    def improve(self, i: int) -> None:
        """Screen every change at block ``i`` on the next two blocks; keep the first of the
        best ``tries`` that raises the whole episode's reward."""
        track, n = self.track, len(self.track.actions)
        horizon = min(n, i + 2 * self.block)
        tries: list[tuple[float, list[Action]]] = []
        for pool in self.pools:
            for sign in (1, -1):
                for length in (self.block, None):
                    acts = _changed(self.env.layout, track.actions, i, pool, sign, length)
                    if acts is not None:
                        screen = self._rollout(i, acts, until=horizon)
                        tries.append((sum(screen.rewards) - sum(track.rewards[i:horizon]), acts))
        tries.sort(key=lambda t: -t[0])
        for gain, acts in tries[: self.tries]:
            if gain <= EPS:
                return
            rest = self._rollout(i, acts)
            if sum(track.rewards[:i]) + sum(rest.rewards) > sum(track.rewards) + EPS:
                self.track = Track(
                    track.actions[:i] + rest.actions, track.rewards[:i] + rest.rewards, track.snaps
                )
                self.kept += 1
                return

    def advance(self, i: int) -> None:
        """From block ``i``'s snapshot to the next block's, along the incumbent."""
        j = i + self.block
        if j < len(self.track.actions):
            self._rollout(i, self.track.actions[i:j], until=j)
            self.track.snaps = {j: self.env.snapshot()}


def plan(
    scenario: str,
    seed: int,
    bases: tuple[str, ...] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    *,
    blocks: int = BLOCKS,
    tries: int = FULL_TRIES,
    given: Path | None = None,
) -> Plan:
    """The planner's plan for ``scenario`` with traffic ``seed`` (module docstring); each base
    runs in its own environment settings with the caller's ``env_kwargs`` on top. ``blocks``
    per episode and ``tries`` per block are its search budget. ``given``: a folder of the bases'
    episodes already played (``agents/plans.py``), used instead of playing them again."""
    t0 = time.perf_counter()
    chosen = bases if bases is not None else default_bases()
    base, actions, kwargs, rewards, simulated, handed = _best_base(
        scenario, seed, chosen, env_kwargs, given
    )
    env = AutoscaleEnv(scenario, **kwargs)
    try:
        search = _Search(env, seed, actions, blocks, tries)
        if sum(search.track.rewards) != rewards[base]:  # the same rewards in the same order
            raise RuntimeError(
                f"planner on {scenario} seed {seed}: its base {base} replayed scores "
                f"{sum(search.track.rewards)!r}, its episode {rewards[base]!r} (a stale "
                "episode handed over, or a simulator that is not deterministic)"
            )
        for i in search.starts:
            search.improve(i)
            search.advance(i)
    finally:
        env.close()
    return Plan(
        "planner",
        base,
        kwargs,
        search.track.actions,
        sum(search.track.rewards),
        time.perf_counter() - t0,
        simulated + search.simulated,
        search.kept,
        rewards,
        handed,
    )


__all__ = ["ceiling_spec", "default_bases", "plan", "static_best"]
