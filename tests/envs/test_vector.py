"""``AutoscaleVectorEnv``: N environments in one process give, step for step, what N separate
environments give, with Gymnasium's vector conventions (seeds, autoreset modes, infos)."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

from chiron_gym import ENV_ID, ENV_ID_V1
from chiron_gym.envs import AutoscaleEnv, AutoscaleEnvV1
from chiron_gym.envs.vector import AutoscaleVectorEnv

SHORT: dict[str, Any] = {"scenario": "default", "horizon_s": 120.0}  # a few decisions an episode


def _singles(n: int, seed: int, cls: type[AutoscaleEnv] = AutoscaleEnv, **kw: object) -> list:
    envs = [cls(**{**SHORT, **kw}) for _ in range(n)]  # type: ignore[arg-type]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    return envs


def test_make_vec_builds_it_through_the_vector_entry_point() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # v0 beside v1
        venv = gym.make_vec(ENV_ID, num_envs=3, **SHORT)
    assert isinstance(venv, AutoscaleVectorEnv)
    assert venv.observation_space.shape == (3, 57)
    assert venv.action_space.shape == (3, 6)
    obs, _ = venv.reset(seed=5)
    assert obs.shape == (3, 57) and obs.dtype == np.float32
    v1 = gym.make_vec(ENV_ID_V1, num_envs=2, **SHORT)
    assert isinstance(v1, AutoscaleVectorEnv)
    assert isinstance(v1.envs[0], AutoscaleEnvV1)
    assert v1.observation_space.shape == (2, 113)


def test_next_step_autoreset_matches_separate_environments_bit_for_bit() -> None:
    """Seeds ``s + i``; an ended episode's environment resets on the next step (reward 0), as
    ``SyncVectorEnv`` does, and carries on from its own random stream."""
    n, seed = 3, 11
    venv = AutoscaleVectorEnv(n, **SHORT)
    obs, _ = venv.reset(seed=seed)
    singles = _singles(n, seed)
    assert np.array_equal(obs, np.stack([e._obs for e in singles]))
    rng = np.random.default_rng(0)
    ended = [False] * n
    resets = 0
    for _ in range(20):
        actions = np.stack([rng.integers(0, venv.single_action_space.nvec) for _ in range(n)])
        got = venv.step(actions)
        for i, env in enumerate(singles):
            if ended[i]:
                o, _ = env.reset()
                r, term, trunc = 0.0, False, False
                resets += 1
            else:
                o, r, term, trunc, _ = env.step(actions[i])
            assert got[0][i].tobytes() == o.tobytes()
            assert got[1][i] == r and got[2][i] == term and got[3][i] == trunc
            ended[i] = term or trunc
    assert resets >= n  # every environment went through an episode's end


def test_same_step_autoreset_gives_the_final_observation_in_infos() -> None:
    venv = AutoscaleVectorEnv(2, autoreset_mode="SameStep", **SHORT)
    venv.reset(seed=0)
    hold = np.tile(venv.envs[0].layout.join(None, None), (2, 1))  # no change
    steps = round(SHORT["horizon_s"] / venv.envs[0].scenario.decision_interval_s)
    for _ in range(steps):
        obs, _, term, trunc, infos = venv.step(hold)
    assert (term | trunc).all()
    assert infos["_final_obs"].all()
    assert infos["final_obs"][0].shape == (57,)
    assert not np.array_equal(infos["final_obs"][0], obs[0])  # obs is the next episode's first
    assert venv.envs[0]._steps == 0


def test_infos_are_merged_as_gymnasium_merges_them() -> None:
    venv = AutoscaleVectorEnv(3, **SHORT)
    venv.reset(seed=1)
    _, _, _, _, stepped = venv.step(np.stack([venv.single_action_space.sample() for _ in range(3)]))
    assert stepped["_gpus"].tolist() == [True, True, True]
    venv.last_infos[1] = {k: v for k, v in venv.last_infos[1].items() if k != "gpus"}  # one lacks
    infos = list(venv.last_infos)

    reference: dict = {}
    for i, info in enumerate(infos):
        reference = VectorEnv._add_info(venv, reference, info, i)
    merged = venv._merged_infos()

    def same(a: object, b: object) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict) and list(a) == list(b)
            for k in a:
                same(a[k], b[k])
        else:
            assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert [repr(x) for x in a.tolist()] == [repr(x) for x in b.tolist()]

    same(merged, reference)
    assert merged["_gpus"].tolist() == [True, False, True]


def test_partial_reset_and_masks() -> None:
    venv = AutoscaleVectorEnv(2, **SHORT)
    obs, _ = venv.reset(seed=[3, 4])
    venv.step(np.stack([venv.single_action_space.sample() for _ in range(2)]))
    again, infos = venv.reset(seed=[3, None], options={"reset_mask": np.array([True, False])})
    assert np.array_equal(again[0], obs[0])
    assert infos["_step"].tolist() == [True, False]
    masks = venv.action_masks()
    assert masks.shape == (2, int(sum(venv.single_action_space.nvec)))


def test_bad_input_is_refused_clearly() -> None:
    half = AutoscaleVectorEnv.__new__(AutoscaleVectorEnv)
    with pytest.raises(ValueError, match="num_envs"):
        half.__init__(0, **SHORT)  # type: ignore[misc]
    half.close()  # a refused one still closes, as VectorEnv.__del__ does
    with pytest.raises(ValueError, match="autoreset_mode"):
        AutoscaleVectorEnv(1, autoreset_mode=AutoresetMode.DISABLED, **SHORT)
    with pytest.raises(ValueError, match="version"):
        AutoscaleVectorEnv(1, version=2, **SHORT)
    venv = AutoscaleVectorEnv(2, **SHORT)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="one action per environment"):
        venv.step(np.zeros((3, 6), dtype=np.int64))
    with pytest.raises(ValueError, match="2 seeds"):
        AutoscaleVectorEnv(3, **SHORT).reset(seed=[1, 2])
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": [1, 0]})
