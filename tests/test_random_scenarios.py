"""Random valid scenarios never crash and keep the accounting (every arrived request in
exactly one state), through ``chiron simulate`` and through the environment."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym.backends.simulate import simulate
from chiron_gym.scenario import parse


def random_scenario(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    horizon = float(rng.uniform(20, 200))
    doc: dict[str, Any] = {
        "horizon_s": horizon,
        "decision_interval_s": float(rng.uniform(1, horizon)),
        "slo": {"interactive": {"ttft_s": float(rng.uniform(0.1, 5)), "itl_s": 0.1}},
        "instance": {"max_batch_cap": int(rng.integers(1, 300))},
        "pools": {},
        "workload": [],
    }
    if rng.random() < 0.5:
        doc["instance"]["profile"] = "a100-llama3-8b-tp1"
    else:
        doc["instance"]["kv_capacity_blocks"] = int(rng.integers(64, 5000))
    if rng.random() < 0.3:
        doc["instance"]["prefix_caching"] = True
    cap = doc["instance"]["max_batch_cap"]
    for pool in ("interactive", "mixed", "batch"):
        if rng.random() < 0.7 or not doc["pools"]:
            lo = int(rng.integers(0, 2))
            hi = lo + int(rng.integers(1, 4))
            doc["pools"][pool] = {
                "initial": int(rng.integers(lo, hi + 1)),
                "min": lo,
                "max": hi,
                "batch_cap": int(rng.integers(1, cap + 1)),
                "warm": int(rng.integers(0, 2)),
            }
    kinds = [
        {"kind": "poisson", "rate_per_s": float(rng.uniform(0, 20))},
        {"kind": "gamma", "rate_per_s": float(rng.uniform(0.1, 20)), "cv": 2.0},
        {"kind": "onoff", "rate_on_per_s": 10.0, "mean_on_s": 5.0, "mean_off_s": 10.0},
        {"kind": "diurnal", "mean_rate_per_s": 5.0, "amplitude": 0.5, "period_s": horizon},
        {"kind": "flash_crowd", "base_rate_per_s": 2.0, "peak_rate_per_s": 15.0,
         "start_s": horizon / 3, "hold_s": horizon / 3},
        {"kind": "piecewise", "starts_s": [0.0, horizon / 2], "rates_per_s": [1.0, 8.0]},
        {"kind": "bulk", "count": int(rng.integers(0, 300)), "first_s": 0.0},
    ]  # fmt: skip
    unit = 16 * int(rng.integers(1, 5))  # one block size for every source's prompt hashes
    for _ in range(int(rng.integers(1, 4))):
        klass = "batch" if rng.random() < 0.4 else "interactive"
        src: dict[str, Any] = {
            "class": klass,
            "arrival": dict(kinds[int(rng.integers(len(kinds)))]),
            "prompt": {"kind": "lognormal", "mean": float(rng.uniform(10, 3000)), "cv": 1.0,
                       "high": int(rng.integers(3000, 20000))},
            "output": {"kind": "fixed", "mean": float(rng.integers(1, 400))},
        }  # fmt: skip
        if klass == "batch":
            src["deadline_s"] = float(rng.uniform(10, 2000))
        if rng.random() < 0.3:
            src["prefix"] = {"block_tokens": unit, "system_tokens": 200,
                             "tenants": 3, "turns": 2.0}  # fmt: skip
        doc["workload"].append(src)
    return doc


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_valid_scenarios_simulate_with_every_request_accounted(seed: int) -> None:
    sc = parse(random_scenario(seed), name="random", source=f"random({seed})")
    out = simulate(sc, seed % 1000)
    n = len(sc.workload(seed % 1000))
    arrived = 0
    for c in out["classes"].values():
        assert c["met"] + c["late"] + c["rejected"] + c["pending"] == c["arrived"]
        arrived += c["arrived"]
    assert arrived == n


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_valid_scenarios_run_in_the_env_with_random_actions(seed: int) -> None:
    from chiron_gym.envs import AutoscaleEnv

    sc = parse(random_scenario(seed), name="random", source=f"random({seed})")
    env = AutoscaleEnv(sc)
    obs, _ = env.reset(seed=seed % 1000)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        action = rng.integers(0, env.action_space.nvec)
        obs, reward, _, truncated, _ = env.step(action)
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        if truncated:
            break
