"""The Gymnasium environment: checkers, determinism, pickling, vector envs, masks, rendering."""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import chiron_gym
import scenarios
from chiron_gym.envs import FEATURE_NAMES, AutoscaleEnv

ENV_IDS = [i for i in gym.registry if i.startswith("chiron_gym/")]


def test_registration_is_idempotent_and_works_without_import() -> None:
    chiron_gym._register()
    chiron_gym._register()
    assert ENV_IDS == ["chiron_gym/Autoscale-v0", "chiron_gym/Autoscale-v1"]
    env = gym.make("chiron_gym:chiron_gym/Autoscale-v0", scenario="mixed-diurnal", horizon_s=60.0)
    env.reset(seed=0)
    env.close()


CHECKED = [(i, s) for i in ENV_IDS for s in scenarios.names()] + [
    ("chiron_gym/Autoscale-v1", s) for s in scenarios.disaggregated_names()
]


@pytest.mark.parametrize(("env_id", "scenario"), CHECKED)
def test_checkers_pass_without_warnings(env_id: str, scenario: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Gymnasium's own nudge beside v1 (v0 stays supported: its models read 57 features)
        warnings.filterwarnings("ignore", ".*Autoscale-v0 is out of date", DeprecationWarning)
        env = gym.make(env_id, scenario=scenario, horizon_s=120.0)
        gym_check(env.unwrapped, skip_render_check=True)
        sb3_check(env.unwrapped, warn=True)
        env.close()


def run(env: gym.Env, seed: int, steps: int) -> list[tuple]:  # type: ignore[type-arg]
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [(obs.tobytes(), repr(sorted(info.items())))]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((obs.tobytes(), r, term, trunc, repr(sorted(info.items()))))
        if term or trunc:
            break
    return out


def test_same_seed_and_actions_give_identical_episodes() -> None:
    """200 steps, two envs: observations, rewards and infos equal byte for byte."""
    kwargs = {"scenario": "mixed-diurnal", "horizon_s": 2000.0, "decision_interval_s": 10.0}
    a = run(gym.make("chiron_gym/Autoscale-v0", **kwargs), 3, 200)
    b = run(gym.make("chiron_gym/Autoscale-v0", **kwargs), 3, 200)
    assert len(a) == 201 and a == b
    c = run(gym.make("chiron_gym/Autoscale-v0", **kwargs), 4, 200)
    assert c != a


def test_pickle_round_trip_mid_episode() -> None:
    env = AutoscaleEnv("default", horizon_s=200.0)
    env.reset(seed=1)
    for _ in range(5):
        env.step(np.array([3, 2, 2, 2, 1, 1]))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(5):
        a = env.step(np.array([2, 2, 3, 1, 3, 1]))
        b = clone.step(np.array([2, 2, 3, 1, 3, 1]))
        assert a[0].tobytes() == b[0].tobytes() and a[1] == b[1]
        assert repr(sorted(a[4].items())) == repr(sorted(b[4].items()))


def test_subproc_vec_env_steps() -> None:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # Subprocesses start fresh (forkserver): the "module:id" form imports chiron_gym there.
    venv = make_vec_env(
        "chiron_gym:chiron_gym/Autoscale-v0",
        n_envs=2,
        seed=0,
        vec_env_cls=SubprocVecEnv,
        env_kwargs={"scenario": "default", "horizon_s": 100.0},
    )
    obs = venv.reset()
    assert obs.shape == (2, len(FEATURE_NAMES))
    for _ in range(12):  # past the horizon: auto-reset
        obs, rewards, _dones, _infos = venv.step(np.array([venv.action_space.sample()] * 2))
    assert obs.shape == (2, len(FEATURE_NAMES)) and rewards.shape == (2,)
    venv.close()


def test_action_masks_shape_and_meaning() -> None:
    env = AutoscaleEnv("interactive-steady", max_step_change=2)
    env.reset(seed=0)
    m = env.action_masks()
    assert m.shape == (int(np.sum(env.action_space.nvec)),) and m.dtype == bool
    # interactive-steady: only an interactive pool (3 ready, min 1, max 8, budget 8 GPUs)
    inter, mixed, batch = m[0:5], m[5:10], m[10:15]
    assert list(inter) == [True, True, True, True, True]
    assert list(mixed) == [False, False, True, False, False]  # absent: only "no change"
    assert list(batch) == [False, False, True, False, False]
    caps_mixed = m[15 + 4 : 15 + 8]
    assert list(caps_mixed) == [False, True, False, False]
    # Drive the pool to its bounds: the mask follows, and the env clips what exceeds them.
    _, _, _, _, info = env.step(np.array([0, 2, 2, 1, 1, 1]))  # ask for -2: 3 -> 1
    assert info["applied_deltas"]["interactive"] == -2
    m = env.action_masks()
    assert list(m[0:5]) == [False, False, True, True, True]  # min 1
    _, _, _, _, info = env.step(np.array([0, 2, 2, 1, 1, 1]))
    assert info["clipped"] == {"interactive": -2}


def test_gpu_budget_is_masked_and_clipped() -> None:
    env = AutoscaleEnv("interactive-steady", max_step_change=2)  # budget 8, 3 held
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.array([4, 2, 2, 1, 1, 1]))
    assert env.backend.gpus_in_use() == 7
    m = env.action_masks()
    assert list(m[0:5]) == [True, True, True, True, False]  # +2 would exceed 8 GPUs
    _, _, _, _, info = env.step(np.array([4, 2, 2, 1, 1, 1]))
    assert info["applied_deltas"]["interactive"] == 1 and info["clipped"] == {"interactive": 1}


def test_invalid_action_is_a_clear_error() -> None:
    env = AutoscaleEnv("default")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action\[3\] = 7: expected 0 <= value < 4"):
        env.step(np.array([2, 2, 2, 7, 1, 1]))
    with pytest.raises(ValueError, match=r"action of shape \(2,\): expected shape \(6,\)"):
        env.step(np.array([2, 2]))


@pytest.mark.parametrize("mode", ["global", "local"])
def test_hierarchical_modes_leave_a_level_to_chiron(mode: str) -> None:
    env = AutoscaleEnv("mixed-diurnal", action_mode=mode, horizon_s=600.0)
    assert list(env.action_space.nvec) == ([5, 5, 5] if mode == "global" else [4, 4, 4])
    env.reset(seed=0)
    done = False
    caps_seen, deltas_seen = set(), set()
    while not done:
        _, _, term, trunc, info = env.step(
            env.action_space.sample() * 0 + (2 if mode == "global" else 1)
        )
        caps_seen.add(tuple(sorted(info["batch_caps"].items())))
        deltas_seen.add(tuple(sorted(info["applied_deltas"].items())))
        done = term or trunc
    if mode == "global":
        assert len(caps_seen) > 1  # Chiron's local loop moved the caps
    else:
        assert len(deltas_seen) > 1  # Chiron's global loop scaled


def test_truncated_at_horizon_never_terminated() -> None:
    env = AutoscaleEnv("default", horizon_s=95.0, decision_interval_s=10.0)
    env.reset(seed=0)
    flags = []
    for _ in range(10):
        _, _, term, trunc, info = env.step(np.array([2, 2, 2, 1, 1, 1]))
        flags.append((term, trunc))
    assert flags[-1] == (False, True) and not any(t for t, _ in flags[:-1])
    assert not any(tr for _, tr in flags[:-1]) and info["sim_time_s"] == 95.0


def test_reward_terms_sum_to_reward_and_weights_apply() -> None:
    env = AutoscaleEnv("default", reward_weights={"gpu_cost": 0.0})
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.array([2, 2, 2, 1, 1, 1]))
    assert info["reward_terms"]["gpu_cost"] == 0.0
    assert r == pytest.approx(sum(info["reward_terms"].values()))
    env.reset(seed=0, options={"reward_weights": {"gpu_cost": 2000.0}, "horizon_s": 50.0})
    _, _r2, _, _, info2 = env.step(np.array([2, 2, 2, 1, 1, 1]))
    assert info2["reward_terms"]["gpu_cost"] == pytest.approx(-2000.0 * 5 * 10 / 3600)
    with pytest.raises(ValueError, match="unknown reward weight 'gpu'"):
        AutoscaleEnv("default", reward_weights={"gpu": 1.0})


def _episode_terms(env: AutoscaleEnv, stop_batch_at_s: float) -> dict[str, float]:
    """Each reward term summed over an episode that keeps every pool until ``stop_batch_at_s``,
    then releases the instances that serve batch (mixed and batch pools, two a step)."""
    env.reset(seed=0)
    totals: dict[str, float] = {}
    done = False
    while not done:
        keep = env.backend.now < stop_batch_at_s
        action = [2, 2, 2, 1, 1, 1] if keep else [2, 0, 0, 1, 1, 1]
        _, _, term, trunc, info = env.step(np.array(action))
        for k, v in info["reward_terms"].items():
            totals[k] = totals.get(k, 0.0) + v
        done = term or trunc
    return totals


def test_deferring_batch_work_past_the_horizon_does_not_pay(tmp_path: Path) -> None:
    """The horizon loophole: 12,000 batch requests due 30 min after a 10-min episode starts. A
    policy that stops serving them half-way saves GPU-hours and, without the episode end's
    charge, no deadline passes inside the episode: at the reward weights of an expensive GPU
    (a good token worth a tenth of the default) it would win. The ``at_risk`` term charges the
    queued work the waiting-time estimate says will now miss its deadline, and serving wins."""
    text = (scenarios.path("default")).read_text()
    text = text.replace("count = 3000", "count = 12000").replace(
        "deadline_s = 1200.0", "deadline_s = 1800.0"
    )
    path = tmp_path / "defer.toml"
    path.write_text(text)
    env = AutoscaleEnv(str(path), reward_weights={"slo_met_work": 0.1})
    serve = _episode_terms(env, stop_batch_at_s=math.inf)
    defer = _episode_terms(env, stop_batch_at_s=300.0)

    def without_charge(t: dict[str, float]) -> float:
        return sum(v for k, v in t.items() if k != "at_risk")

    assert without_charge(defer) > without_charge(serve)  # the loophole, were it not charged
    assert sum(defer.values()) < sum(serve.values())
    # serving leaves work queued too, but on course for its deadline: not charged
    assert serve["at_risk"] == 0.0 and defer["at_risk"] < -5.0 * 5000


def test_render_modes() -> None:
    env = AutoscaleEnv("default", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([2, 2, 2, 1, 1, 1]))
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape[2] == 3
    text = AutoscaleEnv("default", render_mode="ansi")
    text.reset(seed=0)
    line = text.render()
    assert isinstance(line, str) and "int=2+0@64" in line


def test_feature_names_match_the_docs() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "env.md").read_text()
    from chiron_gym.envs import FEATURE_NAMES_V1

    for name in FEATURE_NAMES_V1:  # v0's, then the disaggregated env's
        assert f"`{name}`" in doc, name


def test_bench_env_cli_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from chiron_gym.cli import main

    args = ["bench", "env", "--scenario", "default", "--max-steps", "5", "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["scenario"] == "default" and row["steps"] == 5 and row["steps_per_s"] > 0


def test_reset_options_keep_what_they_do_not_set() -> None:
    """A scenario given at reset keeps the constructor's horizon and reward weights."""
    env = AutoscaleEnv("default", horizon_s=60.0, reward_weights={"gpu_cost": 0.0})
    env.reset(seed=0, options={"scenario": "interactive-steady"})
    assert env.scenario.name == "interactive-steady" and env.scenario.horizon_s == 60.0
    assert env.reward_weights["gpu_cost"] == 0.0
    env.reset(seed=0, options={"horizon_s": 30.0})
    assert env.scenario.horizon_s == 30.0 and env.reward_weights["gpu_cost"] == 0.0


def test_arrival_history_features_follow_the_recent_windows() -> None:
    # interactive-bursty: 10 s windows, so the last minute is 6 windows and 5 minutes 30
    env = AutoscaleEnv("interactive-bursty", action_mode="global")
    hold = env.action_space.nvec // 2  # every pool's delta 0
    for _ in range(2):  # the second episode must not remember the first
        _, info = env.reset(seed=3)
        raw = info["raw"]
        assert raw["interactive.arrival_rate_1m"] == 0.0
        assert raw["interactive.arrival_peak_over_mean_5m"] == 1.0
        rates: list[float] = []
        for _ in range(40):
            _, _, _, _, info = env.step(hold)
            raw = info["raw"]
            rates.append(raw["interactive.arrival_rate"])
            last_1m, last_5m = rates[-6:], rates[-30:]
            mean_5m = sum(last_5m) / len(last_5m)
            assert raw["interactive.arrival_rate_1m"] == pytest.approx(sum(last_1m) / len(last_1m))
            assert raw["interactive.arrival_rate_5m"] == pytest.approx(mean_5m)
            peak = max(last_5m) / mean_5m if mean_5m > 0 else 1.0
            assert raw["interactive.arrival_peak_over_mean_5m"] == pytest.approx(peak)
        assert max(rates[-30:]) > 1.2 * min(rates[-30:]), "a bursty stream should vary"


def test_target_mode_moves_each_pool_towards_the_count_asked_for() -> None:
    """``action_mode="target"``: per pool the instance count wanted (0..max_target), reached
    by at most ``k`` a decision; masks allow the pool's bounds (and no change) only."""
    env = AutoscaleEnv("default", action_mode="target", horizon_s=300.0)
    assert list(env.action_space.nvec) == [41] * 3 + [4] * 3
    env.reset(seed=0)
    masks = env.action_masks()
    assert masks[:41].nonzero()[0].tolist() == list(range(1, 9))  # interactive: min 1, max 8
    assert masks[41:82].nonzero()[0].tolist() == list(range(0, 5))  # mixed: 0-4
    live = []
    for _ in range(4):
        _, _, _, _, info = env.step(np.array([7, 0, 2, 1, 1, 1]))
        raw = info["raw"]
        live.append([raw[f"{p}.ready"] + raw[f"{p}.starting"] for p in ("interactive", "mixed")])
        assert all(abs(d) <= env.layout.k for d in info["applied_deltas"].values())
    assert live == [[4, 0], [6, 0], [7, 0], [7, 0]]  # from 2 and 1: +2, +2, +1, then held
    alone = AutoscaleEnv("azure-conv-like", action_mode="target")  # no mixed or batch pool
    alone.reset(seed=0)
    m = alone.action_masks()
    assert m[41:82].nonzero()[0].tolist() == [0] and m[82:123].nonzero()[0].tolist() == [0]
    with pytest.raises(ValueError, match="max_target 8: pass max_target=40"):
        AutoscaleEnv("chiron-paper", action_mode="target", max_target=8)
    with pytest.raises(ValueError, match="max_target must be an integer >= 1"):
        AutoscaleEnv("default", action_mode="target", max_target=0)


def test_target_mode_masks_counts_the_gpu_budget_cannot_start() -> None:
    env = AutoscaleEnv("mixed-diurnal", action_mode="target", max_step_change=4)
    env.reset(seed=0)
    states = [env.backend.pool_state(p) for p in env.observed_pools]
    used = env.backend.gpus_in_use()
    m = env.layout.masks(states, used, used + 1)  # room for one more instance
    inter = states[0]
    assert m[: env.layout.max_target + 1].nonzero()[0].max() == inter.live + 1
    assert m[inter.live]  # no change is always allowed


def test_rule_agents_refuse_the_target_mode() -> None:
    from agents import make_agent

    ctx = AutoscaleEnv("default", action_mode="target").agent_context()
    for name in ("static", "llumnix", "chiron"):
        with pytest.raises(ValueError, match="instance changes"):
            make_agent(name, ctx)
