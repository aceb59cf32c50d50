"""Heterogeneous pools (issue 20): each pool its own hardware and price per GPU-hour; the reward's
cost term bills each pool at its price; the observation says what each pool's hardware is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chiron_gym.envs import AutoscaleEnv
from chiron_gym.profiles import load as load_profile
from chiron_gym.scenario import ScenarioError, load
from chiron_gym.sim import Pool
from tests.conftest import REPO

HETERO = "hetero-h100-a100"


def test_each_pool_has_its_own_hardware_with_the_shared_engine_settings() -> None:
    sc = load(HETERO)
    specs = {p.pool: p for p in sc.cluster.pools}
    h100, a100 = load_profile("h100-llama2-7b-tp1"), load_profile("a100-llama2-7b-tp1")
    assert specs[Pool.INTERACTIVE].instance.perf_model.profile.name == h100.name  # type: ignore[attr-defined]
    for pool in (Pool.MIXED, Pool.BATCH):
        inst = specs[pool].instance
        assert inst.perf_model.profile.name == a100.name  # type: ignore[attr-defined]
        assert inst.max_num_batched_tokens == 2048 and inst.max_batch_cap == 256  # [instance]'s
        assert specs[pool].gpu_price == 0.55
    assert specs[Pool.INTERACTIVE].gpu_price == 1.0


def test_the_cost_term_bills_each_pool_at_its_price() -> None:
    """A static episode: 2 H100 instances at price 1 and 3 A100 instances at 0.55, one GPU each,
    for the whole 600 s: 0.6083 priced GPU-hours, while GPU-hours stay 0.8333."""
    env = AutoscaleEnv(HETERO, action_mode="global")
    env.reset(seed=0)
    cost = 0.0
    done = False
    info: dict = {}
    while not done:
        _, _, term, trunc, info = env.step(np.full(3, 2, dtype=np.int64))  # no change
        cost += info["reward_terms"]["gpu_cost"]
        done = term or trunc
    assert info["gpu_hours"] == pytest.approx(5 * 600 / 3600)
    assert cost == pytest.approx(-1000.0 * (2 * 1.0 + 3 * 0.55) * 600 / 3600)


def test_the_observation_says_each_pools_hardware() -> None:
    env = AutoscaleEnv(HETERO)
    _, info = env.reset(seed=0)
    raw = info["raw"]
    assert raw["interactive.gpus_per_instance"] == raw["batch.gpus_per_instance"] == 1.0
    # the H100 pool decodes faster than the A100 pools; the mean of the three is 1
    fast, slow = raw["interactive.relative_speed"], raw["batch.relative_speed"]
    assert fast > 1.0 > slow and slow == raw["mixed.relative_speed"]
    assert (fast + 2 * slow) / 3 == pytest.approx(1.0)
    _, info = AutoscaleEnv("default").reset(seed=0)
    assert info["raw"]["batch.relative_speed"] == pytest.approx(1.0)
    tp4 = AutoscaleEnv("large-70b").reset(seed=0)[1]["raw"]
    assert tp4["interactive.gpus_per_instance"] == 4.0


def test_pool_hardware_errors_name_the_key(tmp_path: Path) -> None:
    text = (REPO / "scenarios" / f"{HETERO}.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("gpu_price = 0.55", "gpu_price = -1", 1))
    with pytest.raises(ScenarioError, match=r"bad.toml: pools.mixed.gpu_price.*> 0"):
        load(bad)
    bad.write_text(text.replace('profile = "a100-llama2-7b-tp1"', 'profile = "a100-llama9"', 1))
    with pytest.raises(ScenarioError, match=r"pools.mixed.profile = 'a100-llama9'"):
        load(bad)
