"""Offline datasets (Minari) of the heuristic agents, and the behaviour-cloning example on one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.run.dataset import DatasetError, collect, dataset_id
from chiron_gym.envs import FEATURE_NAMES, AutoscaleEnv

REPO = Path(__file__).resolve().parents[2]


def test_dataset_holds_the_agents_episodes_as_played(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two agents on a family, three draws each: Minari reads back what the env gave, and
    Chiron's recorded actions are the ones it plays on the same seed."""
    res = collect(
        ["chiron", "static"], ["family:train"], 3, tmp_path, horizon_s=120.0, progress=False
    )
    assert [r.dataset_id for r in res] == ["chiron/train-chiron-v0", "chiron/train-static-v0"]
    assert all(r.episodes == 3 and r.steps == 36 for r in res)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    import minari

    ds = minari.load_dataset("chiron/train-chiron-v0")
    episodes = list(ds.iterate_episodes())
    assert ds.total_episodes == 3 and ds.spec.observation_space.shape == (len(FEATURE_NAMES),)
    first = episodes[0]
    assert first.observations.shape == (13, len(FEATURE_NAMES)) and first.actions.shape[0] == 12
    assert bool(first.truncations[-1]) and not first.terminations.any()
    # replay seed 0's draw with the same agent: same observations and actions
    from agents import agent_env_kwargs, make_agent

    env = AutoscaleEnv("family:train", horizon_s=120.0, **agent_env_kwargs("chiron"))
    obs, _ = env.reset(seed=0)
    agent = make_agent("chiron", env.agent_context(), seed=0)
    for t in range(12):
        np.testing.assert_array_equal(obs, first.observations[t])
        action, _ = agent.predict(obs, deterministic=True)
        np.testing.assert_array_equal(action, first.actions[t])
        obs, *_ = env.step(action)
    env2 = ds.recover_environment()
    assert env2.reset(seed=0)[0].shape == (len(FEATURE_NAMES),)


def test_behaviour_cloning_example_runs(tmp_path: Path) -> None:
    collect(["chiron"], ["default"], 4, tmp_path, horizon_s=120.0, progress=False)
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "docs" / "examples" / "behaviour_cloning.py"),
            "--data",
            str(tmp_path),
            "--dataset",
            "chiron/default-chiron-v0",
            "--epochs",
            "3",
            "--play",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "held-out accuracy" in out.stdout and "seed 10000: reward of the clone" in out.stdout


def test_dataset_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="episodes must be >= 1"):
        collect(["chiron"], ["default"], 0, tmp_path)
    with pytest.raises(DatasetError, match="listed twice"):
        collect(["chiron", "chiron"], ["default"], 1, tmp_path)
    collect(["static"], ["default"], 1, tmp_path, horizon_s=20.0, progress=False)
    with pytest.raises(DatasetError, match="exists already"):  # before any episode runs
        collect(["static"], ["default"], 1, tmp_path, horizon_s=20.0, progress=False)
    assert dataset_id("mixed-diurnal", "ppo:runs/a b") == "chiron/mixed-diurnal-ppo-runs-a-b-v0"


def test_datasets_in_the_target_space_share_one_action_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--action-space target``: Chiron's (global mode, local loop inside) and static's (full
    mode) decisions both recorded as the target mode's counts and cap choices; static's replay
    exactly in the dataset's evaluation environment (the target mode's, with its step limit)."""
    res = collect(
        ["chiron", "static"],
        ["default"],
        2,
        tmp_path,
        horizon_s=120.0,
        progress=False,
        action_space="target",
    )
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    import minari

    sets = [minari.load_dataset(r.dataset_id) for r in res]
    assert sets[0].spec.action_space == sets[1].spec.action_space
    assert list(sets[0].spec.action_space.nvec) == [41] * 3 + [4] * 3
    ep = next(sets[1].iterate_episodes())
    env = sets[1].recover_environment(eval_env=True)  # the target mode's (the other: static's)
    assert env.unwrapped.layout.targets
    obs, _ = env.reset(seed=0)
    for t in range(len(ep.actions)):
        np.testing.assert_array_equal(obs, ep.observations[t])
        assert env.unwrapped.action_masks()[ep.actions[t][0]]  # a count the mask allows
        obs, *_ = env.step(ep.actions[t])
    chiron = next(sets[0].iterate_episodes())
    assert (chiron.actions[:, :3] <= 40).all() and set(chiron.actions[:, 3:].ravel()) <= {
        0,
        1,
        2,
        3,
    }
    with pytest.raises(DatasetError, match="--action-space 'mine'"):
        collect(["static"], ["default"], 1, tmp_path / "x", action_space="mine", progress=False)


def test_target_action_reads_counts_and_caps_from_the_infos() -> None:
    from agents.run.dataset import target_action

    names = ("interactive", "mixed", "batch")
    fields = ("exists", "ready", "starting", "batch_cap", "running", "waiting", "kv_usage")
    raw = {f"{n}.{k}": 0.0 for n in names for k in fields}
    raw.update({"interactive.exists": 1.0, "interactive.ready": 3.0, "interactive.starting": 1.0})
    raw.update({"batch.exists": 1.0, "batch.ready": 2.0})
    before = {"raw": raw, "batch_caps": {"interactive": 64, "batch": 128}}
    after = {
        "applied_deltas": {"interactive": -2, "batch": 3},
        "batch_caps": {"interactive": 80, "batch": 128},
    }
    caps = {"interactive": 256, "mixed": 256, "batch": 256}
    # interactive: 4 live - 2; mixed absent; batch 2 + 3; caps: 64 -> 80 is "increase" (+25 %)
    assert target_action(before, after, caps, 40) == [2, 0, 5, 2, 1, 1]
    assert target_action(before, after, caps, 4)[2] == 4  # within max_target


def test_a_planners_episodes_are_recorded_as_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planning reference (here ``static-best``, the cheapest) is planned first, then replayed
    under the collector; the replay must score the plan's own reward (``collect`` checks), and
    its decisions land in the target space beside the other teachers'."""
    from agents.hindsight import static_best

    res = collect(
        ["static-best"],
        ["default"],
        2,
        tmp_path,
        horizon_s=120.0,
        progress=False,
        action_space="target",
    )
    assert [(r.dataset_id, r.episodes, r.steps) for r in res] == [
        ("chiron/default-static-best-v0", 2, 24)
    ]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    import minari

    ds = minari.load_dataset("chiron/default-static-best-v0")
    episodes = list(ds.iterate_episodes())
    for k, ep in enumerate(episodes):
        made = static_best("default", k, {"horizon_s": 120.0})
        assert float(np.sum(ep.rewards)) == pytest.approx(made.reward, rel=0, abs=1e-6)
        # its counts, held: one target per pool from the first decision on
        assert len({tuple(a[:3]) for a in ep.actions}) == 1
