"""Environment speed (``chiron bench env``; B3 and B11 of ``benchmarks/suite.py``): figures, not
tests."""

from __future__ import annotations

import time
from typing import Any


def env_steps_per_second(
    scenario: str, *, max_steps: int = 300, seed: int = 0, action_mode: str = "full"
) -> dict[str, Any]:
    """Environment steps per second with seeded random actions (reset excluded)."""
    from chiron_gym.envs import AutoscaleEnv

    env = AutoscaleEnv(scenario, action_mode=action_mode)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps = 0
    t0 = time.perf_counter()
    done = False
    while steps < max_steps:
        if done:
            env.reset()
            done = False
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
        done = term or trunc
    wall = time.perf_counter() - t0
    env.close()
    return {
        "bench": "env-steps-per-second",
        "scenario": scenario,
        "steps": steps,
        "steps_per_s": round(steps / wall, 1) if wall > 0 else None,
        "sim_s_per_wall_s": round(steps * env.scenario.decision_interval_s / wall, 1),
    }


def fork_ms(random_actions: bool, repeats: int) -> tuple[float, float, float, int]:
    """Median snapshot, restore and both (ms) of ``default`` 30 decisions in, and its size."""
    import numpy as np

    from chiron_gym.envs import AutoscaleEnv

    env = AutoscaleEnv("default")
    env.reset(seed=0)
    env.action_space.seed(0)
    hold = env.layout.join(None, None)  # no change: the scenario's own pools and caps
    for _ in range(30):
        env.step(env.action_space.sample() if random_actions else hold)
    snap_ms, restore_ms = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        snap = env.snapshot()
        t1 = time.perf_counter()
        env.restore(snap)
        t2 = time.perf_counter()
        snap_ms.append((t1 - t0) * 1e3)
        restore_ms.append((t2 - t1) * 1e3)
    both = float(np.median(np.add(snap_ms, restore_ms)))
    return float(np.median(snap_ms)), float(np.median(restore_ms)), both, len(snap.data)


def env_bench(names: list[str] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """``env_steps_per_second`` for every bundled scenario (or ``names``)."""
    import scenarios

    return [env_steps_per_second(n, **kw) for n in (names or scenarios.names())]


__all__ = ["env_bench", "env_steps_per_second", "fork_ms"]
