"""``chiron_gym/Autoscale-v1`` (issues 41, 42): v0's observation and reward unchanged on
aggregated scenarios; prefill and decode pools scaled, masked, snapshotted, and every request
accounted for on disaggregated ones."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import chiron_gym
from chiron_gym.envs import (
    FEATURE_NAMES,
    FEATURE_NAMES_V1,
    AutoscaleEnv,
    AutoscaleEnvV1,
    decode,
    render,
)
from chiron_gym.envs.autoscale_v1 import make_env
from chiron_gym.sim import ALL_POOL_NAMES
from tests.conftest import require_data

PD = "disaggregated/pd-qwen32b-h100"


def test_an_aggregated_scenario_reads_as_in_v0_byte_for_byte() -> None:
    """The first 57 features, the reward and the info of v0, step for step, with v0's actions
    (the prefill and decode slots left at no change)."""
    kwargs = {"scenario": "mixed-diurnal", "horizon_s": 1200.0, "decision_interval_s": 10.0}
    v0 = gym.make(chiron_gym.ENV_ID, **kwargs)
    pd = gym.make(chiron_gym.ENV_ID_V1, **kwargs)
    a, info_a = v0.reset(seed=4)
    b, info_b = pd.reset(seed=4)
    assert b.shape == (len(FEATURE_NAMES_V1),) and FEATURE_NAMES_V1[:57] == FEATURE_NAMES
    assert a.tobytes() == b[:57].tobytes()
    v0.action_space.seed(4)
    layout = pd.unwrapped.layout
    for _ in range(120):
        act = v0.action_space.sample()
        deltas, caps = v0.unwrapped.layout.split(act)
        a, ra, _, ta, info_a = v0.step(act)
        b, rb, _, tb, info_b = pd.step(layout.join(deltas, caps))
        assert a.tobytes() == b[:57].tobytes() and ra == rb and ta == tb
        assert info_a["reward_terms"] == info_b["reward_terms"]
        assert b[57:][np.array([n.endswith(".exists") for n in FEATURE_NAMES_V1[57:]])].sum() == 0
        if ta:
            break


def test_prefill_and_decode_pools_are_scaled_masked_and_accounted_for() -> None:
    require_data("aiconfigurator")
    env = AutoscaleEnvV1(PD, horizon_s=600.0)
    obs, _ = env.reset(seed=0)
    k = env.layout.k
    masks = env.action_masks()
    per_pool = np.split(masks[: 5 * (2 * k + 1)], 5)
    for absent in per_pool[:3]:  # interactive, mixed, batch: no change only
        assert absent.tolist() == [i == k for i in range(2 * k + 1)]
    assert per_pool[3][k + 1] and per_pool[4][k - 1]  # prefill may grow, decode shrink
    raw = decode(obs, env.agent_context().pools)
    assert raw["prefill.ready"] == pytest.approx(2.0) == raw["decode.ready"]
    _, _, _, _, info = env.step(env.layout.join([0, 0, 0, 1, -1], None))
    assert info["applied_deltas"] == {
        "interactive": 0,
        "mixed": 0,
        "batch": 0,
        "prefill": 1,
        "decode": -1,
    }
    raw = info["raw"]
    assert raw["prefill.ready"] + raw["prefill.starting"] == 3.0
    assert " pre=2+1@256 dec=1+0@256 " in render.ansi(raw, 30.0, 0.0)
    assert raw["interactive.prompt_tokens_mean"] > 1000.0
    assert raw["prefill.transfers"] >= raw["decode.transfers"] >= 0.0
    done = False
    while not done:
        _, _, _, done, info = env.step(env.layout.join(None, None))
    c = env.backend.summary()["interactive"]
    assert c.arrived == c.met + c.late + c.rejected + c.pending > 1000


def test_a_snapshot_of_a_disaggregated_episode_replays_bit_for_bit() -> None:
    require_data("aiconfigurator")
    env = AutoscaleEnvV1(PD, horizon_s=900.0)
    env.reset(seed=2)
    for _ in range(5):
        env.step(env.layout.join([0, 0, 0, 1, 0], None))
    snap = env.snapshot()
    rng = np.random.default_rng(0)
    plan = [env.layout.join([0, 0, 0, *rng.integers(-1, 2, 2).tolist()], None) for _ in range(8)]
    first = [env.step(a)[0].tobytes() for a in plan]
    env.restore(snap)
    assert [env.step(a)[0].tobytes() for a in plan] == first


def test_make_env_picks_the_id_from_the_scenario() -> None:
    assert type(make_env("default")) is AutoscaleEnv
    require_data("aiconfigurator")
    assert type(make_env(PD)) is AutoscaleEnvV1


def test_an_observation_of_unknown_length_is_refused() -> None:
    env = AutoscaleEnv("default")
    with pytest.raises(ValueError, match="an observation of 60 features: expected 57"):
        decode(np.zeros(60, dtype=np.float32), env.agent_context().pools)


def test_layouts_and_feature_builders_refuse_what_they_do_not_know() -> None:
    from chiron_gym.envs.actions import ActionLayout
    from chiron_gym.envs.features import FeatureBuilder
    from chiron_gym.sim import ALL_POOLS, Pool

    layout = ActionLayout("full", 2, ALL_POOLS)
    assert layout.join([1, 0, 0], None).tolist() == [3, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="4 choices for a layout of 5 pools: expected 5"):
        layout.join([0, 0, 0, 0], None)
    with pytest.raises(ValueError, match="pools"):
        FeatureBuilder(AutoscaleEnv("default").scenario, pools=(Pool.INTERACTIVE,))


def test_lost_capacity_is_observed_in_the_window_it_happens() -> None:
    """``flaky-gpus`` fails two interactive instances at 900 s (scripted) beside drawn
    failures; ``spot-mix`` reclaims spot instances: every event the cluster counts shows in
    exactly one window's features, and the prices are the scenario's."""
    env = AutoscaleEnvV1("flaky-gpus", horizon_s=1200.0)
    env.reset(seed=0)
    seen = {p: 0.0 for p in ("interactive", "mixed", "batch")}
    at_900 = 0.0
    done = False
    while not done:
        _, _, _, done, info = env.step(env.layout.join(None, None))
        raw = info["raw"]
        for p in seen:
            seen[p] += raw[f"{p}.failures"]
        if info["sim_time_s"] - env.scenario.decision_interval_s < 900.0 <= info["sim_time_s"]:
            at_900 = raw["interactive.failures"]
    counted = env.backend.capacity_events()
    assert at_900 >= 2
    assert seen == {ALL_POOL_NAMES[p]: float(c[0]) for p, c in counted.items()}
    spot = AutoscaleEnvV1("spot-mix")
    spot.reset(seed=0)
    notices = 0.0
    done = False
    while not done:
        _, _, _, done, info = spot.step(spot.layout.join(None, None))
        notices += info["raw"]["mixed.reclaim_notices"] + info["raw"]["batch.reclaim_notices"]
        assert info["raw"]["mixed.gpu_price"] == 0.35 and info["raw"]["interactive.gpu_price"] == 1
    events = spot.backend.capacity_events()
    assert notices == sum(c[1] for c in events.values()) > 0


def test_v0_is_said_to_be_out_of_date_and_still_works() -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make(chiron_gym.ENV_ID, scenario="default", horizon_s=60.0)
    assert any("out of date" in str(w.message) for w in caught)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (57,)
