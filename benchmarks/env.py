"""Environment speed (``chiron bench env``; B3 of ``benchmarks/suite.py``): figures, not tests."""

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


def env_bench(names: list[str] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """``env_steps_per_second`` for every bundled scenario (or ``names``)."""
    import scenarios

    return [env_steps_per_second(n, **kw) for n in (names or scenarios.names())]


__all__ = ["env_bench", "env_steps_per_second"]
