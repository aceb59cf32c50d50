"""Residual PPO on Chiron: a zero correction is Chiron; the correction is bounded; it trains,
saves, loads and plays through ``chiron evaluate``'s episode loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.residual import ChironResidual
from agents.run.episode import run_episode
from agents.train.ppo import TrainError, train
from agents.train.residual_env import RelativeToChiron, ResidualWrapper
from chiron_gym.envs import AutoscaleEnv

CHIRON_ENV = {"action_mode": "global", "max_step_change": 16}


@pytest.mark.parametrize("scenario", ["default", "family:train@7"])
def test_a_zero_correction_is_chiron_step_for_step(scenario: str) -> None:
    env = ResidualWrapper(AutoscaleEnv(scenario, **CHIRON_ENV))
    obs, _ = env.reset(seed=3)
    assert obs.shape == (env.observation_space.shape[0],)
    total, done = 0.0, False
    while not done:
        obs, r, term, trunc, _ = env.step(np.ones(3, dtype=np.int64))  # r = 0 on every pool
        total += r
        done = term or trunc
    assert total == run_episode("chiron", scenario, 3).row["reward"]


def test_the_correction_moves_chirons_proposal_within_bounds() -> None:
    env = AutoscaleEnv("default", **CHIRON_ENV)
    obs, _ = env.reset(seed=0)
    res = ChironResidual(env.agent_context(), step=2)
    feats = res.propose(obs, True)
    assert feats.shape == (3,)
    base = res.proposal.copy()
    assert (res.compose([2, 2, 2]) == base).all()
    assert (res.compose([4, 0, 2]) == np.clip(base + np.array([2, -2, 0]), 0, 32)).all()
    for bad in ([5, 0, 0], [0, 0], [-1, 0, 0]):
        with pytest.raises(ValueError, match="residual action"):
            res.compose(bad)
    # two decisions composed, one of them Chiron's own action: one departure in two
    assert res.departure_stats() == {"decisions": 2, "departures": 1, "departure_rate": 0.5}
    res.chiron_action()
    assert res.departure_stats()["decisions"] == 3 and res.departures == 1
    res.propose(obs, True)  # a new episode starts the count again
    assert res.departure_stats() == {"decisions": 0, "departures": 0, "departure_rate": 0.0}
    with pytest.raises(ValueError, match="action mode 'global'"):
        ChironResidual(AutoscaleEnv("default").agent_context())


def test_a_residual_model_trains_and_plays_as_chiron_at_first(tmp_path: Path) -> None:
    hp = tmp_path / "hp.yml"
    hp.write_text(
        "default:\n  n_steps: 64\n  batch_size: 32\n  n_epochs: 1\n  learning_rate: 1.0e-9\n"
        '  normalize: true\n  policy_kwargs: "dict(net_arch=[16])"\n'
    )
    out = tmp_path / "run"
    train(
        "default",
        64,
        0,
        out,
        action_mode="global",
        hyperparams=hp,
        eval_freq=0,
        checkpoint_freq=64,
        progress=False,
        env_kwargs={"horizon_s": 300.0},
        residual="chiron",
    )
    meta = json.loads((out / "train.json").read_text())
    assert meta["residual"] == "chiron" and meta["env_kwargs"]["max_step_change"] == 16
    # A learning rate of ~0 keeps the initial policy, whose bias favours r = 0: deterministic,
    # it is Chiron; and ``ppo:PATH`` runs in Chiron's settings, taken from ``train.json``.
    kw = {"horizon_s": 300.0}
    ppo = run_episode(f"ppo:{out}", "default", 1, env_kwargs=kw).row
    chiron = run_episode("chiron", "default", 1, env_kwargs=kw).row
    assert ppo["reward"] == chiron["reward"] and ppo["gpu_hours"] == chiron["gpu_hours"]
    # a checkpoint loads as what it is too (the run's record is written beside checkpoints)
    ckpt = out / "checkpoints" / "ppo_64_steps.zip"
    assert ckpt.is_file() and (out / "checkpoints" / "ppo_vecnormalize_64_steps.pkl").is_file()
    assert run_episode(f"ppo:{ckpt}", "default", 1, env_kwargs=kw).row["reward"] == ppo["reward"]


def test_the_deviation_penalty_charges_each_instance_of_correction() -> None:
    """Training's ``--residual-penalty``: the same episode, less the cost times the corrections
    made, named ``deviation`` among the reward terms; no correction, no charge."""
    actions = [np.array([(t + p) % 3 for p in range(3)], dtype=np.int64) for t in range(40)]
    plain = ResidualWrapper(AutoscaleEnv("default", horizon_s=400.0, **CHIRON_ENV))
    charged = ResidualWrapper(AutoscaleEnv("default", horizon_s=400.0, **CHIRON_ENV), 1, 2.5)
    plain.reset(seed=1)
    charged.reset(seed=1)
    for a in actions:
        o1, r1, *_, i1 = plain.step(a)
        o2, r2, *_, i2 = charged.step(a)
        corrections = int(np.abs(a - 1).sum())
        assert (o1 == o2).all()
        assert r2 == pytest.approx(r1 - 2.5 * corrections)
        assert i2["reward_terms"]["deviation"] == -2.5 * corrections
        assert sum(i2["reward_terms"].values()) == pytest.approx(r2)
        assert "deviation" not in i1["reward_terms"]
    with pytest.raises(ValueError, match="residual_penalty"):
        ResidualWrapper(AutoscaleEnv("default", **CHIRON_ENV), 1, -1.0)


def test_the_relative_reward_is_the_margin_over_chiron_on_the_same_draw() -> None:
    """Training's ``--relative-reward``: on each draw (unseeded resets of a family, as in
    training) Chiron's own play earns exactly 0 at every step; any other play earns its reward
    minus Chiron's at the same step of the same draw, over Chiron's mean per-step magnitude."""
    kw: dict[str, Any] = {"horizon_s": 200.0, **CHIRON_ENV}
    rel = RelativeToChiron(
        ResidualWrapper(AutoscaleEnv("family:wide", **kw)), AutoscaleEnv("family:wide", **kw)
    )
    rel.reset(seed=5)
    seeds = []
    for _ in range(2):  # Chiron's play: zero, draw after draw
        rel.reset()
        seeds.append(rel.unwrapped.episode_seed)  # type: ignore[attr-defined]
        done = False
        while not done:
            _, r, term, trunc, _ = rel.step(np.ones(3, dtype=np.int64))
            assert r == 0.0
            done = term or trunc
    assert seeds[0] != seeds[1]
    # one more instance on every pool at every step: the raw episode, less Chiron's, scaled
    assert rel.baseline is not None
    raw = ResidualWrapper(AutoscaleEnv("family:wide", **kw))
    rel.reset()
    seed = rel.unwrapped.episode_seed  # type: ignore[attr-defined]
    chiron = list(rel.baseline.rewards)
    gpu_decision = 1000.0 * 10.0 / 3600.0  # the default weights and decision interval
    scale = max(float(np.mean(np.abs(chiron))), gpu_decision)
    assert rel.baseline.scale == pytest.approx(scale) and len(chiron) == 20
    raw.reset(seed=seed)
    got, want, done = [], [], False
    while not done:
        _, r_rel, *_ = rel.step(np.full(3, 2, dtype=np.int64))
        _, r_raw, term, trunc, _ = raw.step(np.full(3, 2, dtype=np.int64))
        got.append(r_rel)
        want.append((r_raw - chiron[len(want)]) / scale)
        done = term or trunc
    assert got == pytest.approx(want) and any(g != 0.0 for g in got)


def test_a_standalone_policy_s_relative_reward_is_its_margin_over_chiron(tmp_path: Path) -> None:
    """``--relative-reward`` without ``--residual`` (issue 43): the policy's environment pays
    its reward minus Chiron's, Chiron playing the same draw in its own settings; Chiron's own
    actions there earn 0, anything else its margin over Chiron's mean step."""
    from agents.chiron import ChironAgent
    from agents.run.episode import play

    kw: dict[str, Any] = {"horizon_s": 200.0, **CHIRON_ENV}
    rel = RelativeToChiron(AutoscaleEnv("family:wide", **kw), AutoscaleEnv("family:wide", **kw))
    run = play(rel, ChironAgent, 3, record_series=True)
    assert run.reward == 0.0 and run.steps == 20
    full = AutoscaleEnv("family:wide", horizon_s=200.0)  # a standalone policy's own settings
    rel_full = RelativeToChiron(full, AutoscaleEnv("family:wide", **kw))
    rel_full.reset(seed=3)
    keep = full.layout.join(None, None)
    _, r, *_ = rel_full.step(keep)
    raw = AutoscaleEnv("family:wide", horizon_s=200.0)
    raw.reset(seed=3)
    _, r_raw, *_ = raw.step(keep)
    base = rel_full.baseline
    assert r == pytest.approx((r_raw - base.rewards[0]) / base.scale)
    with pytest.raises(TrainError, match="--vec-env inline plays the plain environment"):
        train("default", 64, 0, tmp_path / "x", relative_reward=True, vec_env="inline")


def test_residual_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="action mode global"):
        train("default", 64, 0, tmp_path, action_mode="full", residual="chiron")
    with pytest.raises(TrainError, match="known: chiron"):
        train("default", 64, 0, tmp_path, action_mode="global", residual="llumnix")
    with pytest.raises(TrainError, match="--algo ppo"):
        train(
            "default", 64, 0, tmp_path, action_mode="global", residual="chiron", algo="maskable-ppo"
        )
    with pytest.raises(TrainError, match="--residual-penalty goes with --residual"):
        train("default", 64, 0, tmp_path, residual_penalty=1.0)
    with pytest.raises(TrainError, match="--residual-penalty must be"):
        train(
            "default",
            64,
            0,
            tmp_path,
            action_mode="global",
            residual="chiron",
            residual_penalty=float("nan"),
        )


def test_a_model_trains_on_an_earlier_releases_features_and_plays_on_todays(
    tmp_path: Path,
) -> None:
    """``observation_features=N``: the policy reads the first N features (Chiron's proposal,
    for a residual, still reads them all); the model then plays on the full observation."""
    from agents.model_files import load_model
    from agents.ppo import PPOAgent, algo_class
    from chiron_gym.envs import FEATURES

    hp = tmp_path / "hp.yml"
    hp.write_text(
        "default:\n  n_steps: 64\n  batch_size: 32\n  n_epochs: 1\n  learning_rate: 1.0e-9\n"
        '  normalize: true\n  policy_kwargs: "dict(net_arch=[16])"\n'
    )
    kw = {"horizon_s": 300.0}
    common: dict[str, Any] = dict(
        hyperparams=hp, eval_freq=0, checkpoint_freq=0, progress=False, env_kwargs=kw
    )
    res, direct = tmp_path / "res", tmp_path / "direct"
    train("default", 64, 0, res, action_mode="global", residual="chiron",
          observation_features=54, **common)  # fmt: skip
    train("default", 64, 0, direct, action_mode="global", observation_features=40, **common)
    for out, features, policy_input in ((res, 54, 54 + 3), (direct, 40, 40)):
        assert json.loads((out / "train.json").read_text())["observation_features"] == features
        zip_path = PPOAgent.files(out)[0]
        assert load_model(zip_path, algo_class("ppo")).observation_space.shape == (policy_input,)
    # the residual plays as Chiron at first (a learning rate of ~0 keeps r = 0 favoured)
    ppo = run_episode(f"ppo:{res}", "default", 1, env_kwargs=kw).row
    chiron = run_episode("chiron", "default", 1, env_kwargs=kw).row
    assert ppo["reward"] == chiron["reward"] and ppo["gpu_hours"] == chiron["gpu_hours"]
    assert run_episode(f"ppo:{direct}", "default", 1, env_kwargs=kw).row["gpu_hours"] > 0
    for bad in (0, len(FEATURES) + 1):
        with pytest.raises(TrainError, match="--observation-features"):
            train("default", 64, 0, tmp_path / "x", observation_features=bad)
