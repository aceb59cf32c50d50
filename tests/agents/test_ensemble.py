"""Ensembles of PPO models (agents/ensemble.py): the vote is the median member's action (or the
one at a stated quantile), the folder round-trips through ``chiron ensemble`` and ``ppo:FOLDER``,
bad sets are refused.

The members are a shipped residual model (the first member of ``ppo-general``) with its action
head's bias pushed so that it always answers one correction (-1, 0 or +1 on every pool): real
models, whose votes we know."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.ensemble import EnsembleAgent, combine_rank, parse_combine, vote, write_ensemble
from agents.model_files import load_model
from agents.ppo import PPOAgent, algo_class
from agents.run.episode import run_episode
from chiron_gym.cli import main
from chiron_gym.config import InputError
from chiron_gym.envs import AutoscaleEnv

MODELS = Path(__file__).resolve().parents[2] / "agents" / "models"
SHIPPED = MODELS / "ppo-general" / "member-0"  # one residual model: the shipped ensemble's first
KW = {"horizon_s": 600.0}


def fixed(tmp: Path, name: str, correction: int) -> Path:
    """The shipped residual model, made to answer ``correction`` on every pool."""
    import torch

    zip_path, _, _ = PPOAgent.files(SHIPPED)
    model = load_model(zip_path, algo_class("ppo"))
    with torch.no_grad():
        model.policy.action_net.bias[:] = 0.0
        model.policy.action_net.bias[correction + 1 :: 3] = 100.0  # r = correction wins
    folder = tmp / name
    folder.mkdir()
    model.save(folder / "model.zip")
    shutil.copyfile(SHIPPED / "vecnormalize.npz", folder / "vecnormalize.npz")
    shutil.copyfile(SHIPPED / "train.json", folder / "train.json")
    return folder


def test_the_median_vote_is_played(tmp_path: Path) -> None:
    down, zero, up = (fixed(tmp_path, n, c) for n, c in (("down", -1), ("zero", 0), ("up", 1)))
    # one of each: the median is 0, which is Chiron step for step
    mixed = write_ensemble([up, down, zero], tmp_path / "mixed")
    row = run_episode(f"ppo:{mixed}", "default", 2, env_kwargs=KW).row
    chiron = run_episode("chiron", "default", 2, env_kwargs=KW).row
    assert row["reward"] == chiron["reward"] and row["gpu_hours"] == chiron["gpu_hours"]
    # two answer +1: the ensemble plays +1, as the +1 member alone does
    ups = write_ensemble([up, zero, up], tmp_path / "ups")
    alone = run_episode(f"ppo:{up}", "default", 2, env_kwargs=KW).row
    voted = run_episode(f"ppo:{ups}", "default", 2, env_kwargs=KW).row
    assert voted["reward"] == alone["reward"] and voted["gpu_hours"] == alone["gpu_hours"]
    assert voted["gpu_hours"] > chiron["gpu_hours"]  # +1 on every pool holds more GPUs


def test_the_ensemble_acts_on_chirons_proposal_once_per_decision(tmp_path: Path) -> None:
    zero, up = fixed(tmp_path, "zero", 0), fixed(tmp_path, "up", 1)
    ens = write_ensemble([zero, up, up], tmp_path / "ens")
    env = AutoscaleEnv("default", action_mode="global", max_step_change=16)
    obs, _ = env.reset(seed=0)
    agent = EnsembleAgent.load(ens, env.agent_context())
    action, _ = agent.predict(obs, episode_start=np.array([True]))
    proposal = agent.lead.residual.proposal
    assert (action == np.clip(proposal + 1, 0, 32)).all()
    record = json.loads((ens / "train.json").read_text())
    assert record["ensemble"]["members"] == ["member-0", "member-1", "member-2"]
    assert record["residual"] == "chiron" and record["action_mode"] == "global"
    assert json.loads((ens / "member-1" / "train.json").read_text())["source"] == str(up)


def test_bad_ensembles_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zero = fixed(tmp_path, "zero", 0)
    with pytest.raises(InputError, match="an odd number of members, got 2"):
        write_ensemble([zero, zero], tmp_path / "even")
    direct = MODELS / "ppo-general-direct"
    with pytest.raises(InputError, match=r"acts differently from .*residual, residual_step differ"):
        write_ensemble([zero, zero, direct], tmp_path / "mixed")
    recurrent = fixed(tmp_path, "recurrent", 0)
    record = json.loads((recurrent / "train.json").read_text())
    (recurrent / "train.json").write_text(json.dumps({**record, "algo": "recurrent-ppo"}))
    with pytest.raises(InputError, match="a recurrent policy keeps a state"):
        write_ensemble([zero, zero, recurrent], tmp_path / "rec")
    write_ensemble([zero], tmp_path / "one")
    with pytest.raises(InputError, match="exists and is not empty"):
        write_ensemble([zero], tmp_path / "one")
    # a hand-edited record: an even member list is named with the file
    bad = tmp_path / "one" / "train.json"
    record = json.loads(bad.read_text())
    record["ensemble"]["members"] = ["member-0", "member-0"]
    bad.write_text(json.dumps(record))
    code = main(["evaluate", "--agents", f"ppo:{tmp_path / 'one'}", "--scenarios", "default"])
    assert code == 2
    assert f"{bad}: ensemble.members: an odd number of members" in capsys.readouterr().err


def test_the_ensemble_command_writes_a_playable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zero = fixed(tmp_path, "zero", 0)
    out = tmp_path / "ens"
    assert (
        main(["ensemble", str(out), str(zero), str(zero), str(zero), "--selected-by", "a test"])
        == 0
    )
    assert f"play it as ppo:{out}" in capsys.readouterr().out
    assert json.loads((out / "train.json").read_text())["ensemble"]["selected_by"] == "a test"
    assert main(["ensemble", str(tmp_path / "e2"), str(zero), str(zero)]) == 2
    assert "an odd number of members" in capsys.readouterr().err
    q = tmp_path / "q"
    assert (
        main(["ensemble", str(q), str(zero), str(zero), str(zero), "--combine", "quantile:0.25"])
        == 0
    )
    assert "voting by quantile:0.25" in capsys.readouterr().out
    assert json.loads((q / "train.json").read_text())["ensemble"]["combine"] == "quantile:0.25"
    assert main(["ensemble", str(tmp_path / "e3"), str(zero), "--combine", "mean"]) == 2
    assert "--combine 'mean': expected 'median', 'quantile:Q'" in capsys.readouterr().err


def test_a_quantile_vote_plays_the_member_at_its_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Five members answering -1, 0, 0, +1, +1: the median plays 0 (Chiron), quantile 0.75 the
    +1 of rank 3, quantile 0 the -1; recorded in train.json or set per run, and the same."""
    down, zero, up = (fixed(tmp_path, n, c) for n, c in (("down", -1), ("zero", 0), ("up", 1)))
    five = [up, down, zero, up, zero]
    median = write_ensemble(five, tmp_path / "median")
    lean = write_ensemble(five, tmp_path / "lean", combine="quantile:0")
    assert json.loads((lean / "train.json").read_text())["ensemble"]["combine"] == "quantile:0"
    rows = {
        name: run_episode(spec, "default", 2, env_kwargs=KW).row
        for name, spec in {
            "chiron": "chiron",
            "median": f"ppo:{median}",
            "q0.5": f"ppo:{median}[combine=quantile:0.5]",
            "q0.75": f"ppo:{median}[combine=quantile:0.75]",
            "q0": f"ppo:{median}[combine=quantile:0]",
            "lean": f"ppo:{lean}",
            "up": f"ppo:{up}",
            "down": f"ppo:{down}",
        }.items()
    }
    keys = ("reward", "gpu_hours")
    same = [
        ("median", "chiron"),
        ("q0.5", "chiron"),
        ("q0.75", "up"),
        ("q0", "down"),
        ("lean", "down"),
    ]
    for a, b in same:
        assert [rows[a][k] for k in keys] == [rows[b][k] for k in keys], (a, b)
    assert rows["up"]["gpu_hours"] > rows["chiron"]["gpu_hours"] > rows["down"]["gpu_hours"]
    # the rank: round(Q (n - 1)), halves up; median is the middle of an odd count
    assert [
        combine_rank(c, 5) for c in ("median", "quantile:0", "quantile:0.25", "quantile:1")
    ] == [2, 0, 1, 4]
    assert combine_rank("quantile:0.125", 5) == 1 and parse_combine("median") == ("quantile", 0.5)
    for bad in (
        "mean",
        "quantile:",
        "quantile:1.5",
        "quantile:nan",
        "quantile:x",
        3,
        "consensus:0.6",
    ):
        with pytest.raises(ValueError, match="expected 'median', 'quantile:Q' with Q in"):
            parse_combine(bad)
    # refused before any episode, naming the spec or the file
    out = ["--out", str(tmp_path / "out")]  # nothing is written if the check works
    code = main(
        [
            "evaluate",
            "--agents",
            f"ppo:{median}[combine=quantile:2]",
            "--scenarios",
            "default",
            *out,
        ]
    )
    assert code == 2 and "combine = 'quantile:2': expected 'median'" in capsys.readouterr().err
    code = main(
        ["evaluate", "--agents", f"ppo:{up}[combine=median]", "--scenarios", "default", *out]
    )
    assert code == 2 and "combine applies to an ensemble folder only" in capsys.readouterr().err
    with pytest.raises(InputError, match="--combine 'max': expected"):
        write_ensemble(five, tmp_path / "bad", combine="max")
    record = json.loads((lean / "train.json").read_text())
    record["ensemble"]["combine"] = "mode"
    (lean / "train.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"lean/train.json: ensemble.combine = 'mode': expected"):
        EnsembleAgent.check(lean)
    assert not (tmp_path / "out").exists()


def test_a_consensus_corrects_chiron_only_as_far_as_all_but_a_few_members_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``consensus:Q``: the range between the ranks round(Q (n - 1)) and n - 1 - round(Q (n - 1))
    of the sorted votes, and the action in it nearest no correction."""
    zero = 1  # a residual of step 1: indices 0, 1, 2 are -1, 0, +1
    votes = np.array([[2, 2, 0], [2, 2, 0], [2, 1, 0], [2, 1, 0], [0, 0, 2]])  # 5 members x 3 pools
    # four of five want +1 on pool 0, three on pool 1, four want -1 on pool 2
    assert vote(votes, "consensus:0.25", zero).tolist() == [2, 1, 0]
    assert vote(votes, "consensus:0", zero).tolist() == [1, 1, 1]  # unanimity: none
    assert vote(votes, "consensus:0.5", zero).tolist() == vote(votes, "median", zero).tolist()
    assert vote(votes, "quantile:0.25", zero).tolist() == [2, 1, 0]
    assert vote(votes, "quantile:0.75", zero).tolist() == [2, 2, 0]
    # where they differ: two members want -1, three +1; quantile 0.25 removes on the two's word,
    # a consensus of four keeps Chiron's proposal
    split = np.array([[0], [0], [2], [2], [2]])
    assert vote(split, "quantile:0.25", zero).tolist() == [0]
    assert vote(split, "consensus:0.25", zero).tolist() == [1]
    # the median is numpy's median of an odd count of integer votes
    rng = np.random.default_rng(0)
    for n in (1, 3, 5, 7):
        v = rng.integers(0, 3, size=(n, 3))
        assert (vote(v, "median", zero) == np.median(v, axis=0).astype(np.int64)).all()
    with pytest.raises(ValueError, match="a consensus needs an odd number of votes, got 4"):
        vote(votes[:4], "consensus:0.5", zero)
    # played: three +1 members and two -1 ones: a consensus of four plays Chiron; the median +1
    down, up = fixed(tmp_path, "down", -1), fixed(tmp_path, "up", 1)
    ens = write_ensemble([up, up, down, up, down], tmp_path / "ens", combine="consensus:0.25")
    rows = {
        spec: run_episode(spec, "default", 2, env_kwargs=KW).row
        for spec in ("chiron", f"ppo:{ens}", f"ppo:{ens}[combine=median]", f"ppo:{up}")
    }
    keys = ("reward", "gpu_hours")
    assert [rows[f"ppo:{ens}"][k] for k in keys] == [rows["chiron"][k] for k in keys]
    assert [rows[f"ppo:{ens}[combine=median]"][k] for k in keys] == [
        rows[f"ppo:{up}"][k] for k in keys
    ]
    # a consensus needs Chiron beneath the members
    direct = MODELS / "ppo-general-direct"
    with pytest.raises(InputError, match="a consensus leans towards Chiron: residual models only"):
        write_ensemble([direct], tmp_path / "direct", combine="consensus:0")
    one = write_ensemble([direct], tmp_path / "one")
    out = ["--out", str(tmp_path / "out")]  # nothing is written if the check works
    code = main(
        ["evaluate", "--agents", f"ppo:{one}[combine=consensus:0]", "--scenarios", "default", *out]
    )
    assert code == 2 and "residual models only" in capsys.readouterr().err
    # a hand-edited record asking the same is refused naming the file
    record = json.loads((one / "train.json").read_text())
    record["ensemble"]["combine"] = "consensus:0"
    (one / "train.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match=r"one/train.json: ensemble.combine = 'consensus:0': a"):
        EnsembleAgent.check(one)
    code = main(["evaluate", "--agents", f"ppo:{one}", "--scenarios", "default", *out])
    assert code == 2 and "one/train.json: ensemble.combine" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
