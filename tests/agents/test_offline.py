"""Offline RL with d3rlpy (``chiron train offline``, agents/train/offline.py, agents/offline.py).

The fit runs in ``.venv-offline`` (``make test`` builds it). Without it the tests that fit skip
with the reason, and fail instead when ``CHIRON_REQUIRE_OFFLINE=1`` (as ``make test`` sets).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from agents.model_files import TrainError
from agents.offline import ObsScaling, decode_actions, encode_actions
from agents.spec import check_specs
from agents.train.offline import offline_python, train_offline
from chiron_gym.cli import main
from chiron_gym.config import InputError
from tests.agents.playing import play, record_demonstrations, static_target_action


@pytest.fixture(scope="module")
def python() -> Path:
    py = offline_python()
    if not py.is_file():
        reason = f"{py} is absent (make offline-env builds d3rlpy's environment)"
        if os.environ.get("CHIRON_REQUIRE_OFFLINE") == "1":
            pytest.fail(f"CHIRON_REQUIRE_OFFLINE=1 but {reason}")
        pytest.skip(reason)
    return py


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_demonstrations(tmp_path_factory.mktemp("datasets"))


def test_the_action_encoding_round_trips_and_plays_the_nearest_choice() -> None:
    nvec = [41, 41, 41, 4, 4, 4, 1]
    choices = np.array([[i % n for n in nvec] for i in range(41)])
    points = encode_actions(choices, nvec)
    assert points.min() >= -1.0 and points.max() <= 1.0
    assert (decode_actions(points, nvec) == choices).all()
    assert decode_actions(encode_actions([[2, 0, 40, 3, 1, 0, 0]], nvec), nvec).tolist() == [
        [2, 0, 40, 3, 1, 0, 0]
    ]
    # between two choices: the nearer; beyond the range: the end
    step = 2.0 / 40
    near = [-1 + 2 * step + 0.4 * step, -1 + 0.6 * step, 7.0, -7.0, 0.0, 0.34, 0.9]
    assert decode_actions([near], nvec).tolist() == [[2, 1, 40, 0, 2, 2, 0]]


def test_constant_features_are_read_as_zero_and_the_rest_standardised() -> None:
    obs = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, 0.0]])
    s = ObsScaling.fit(obs)
    assert s.constant == 2
    z = s(np.array([[2.0, 500.0, -3.0], [1e9, 5.0, 0.0]]))
    assert z[0].tolist() == [0.0, 0.0, 0.0] and z[1].tolist() == [10.0, 0.0, 0.0]  # clipped


def test_an_offline_policy_of_static_plays_as_static_on_an_unseen_seed(
    data: Path, python: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """IQL on static's decisions (one action, its counts and keep its caps), trained through
    the command line in d3rlpy's environment, exported as TorchScript and played here: it must
    play static's episode step for step on a traffic seed the dataset did not hold."""
    out = tmp_path / "iql"
    rc = main(
        [
            "train",
            "offline",
            "chiron/default-static-v0",
            "--data",
            str(data),
            "--out",
            str(out),
            "--steps",
            "4000",
            "--hidden",
            "64,64",
            "--batch-size",
            "48",
            "--python",
            str(python),
        ]
    )
    assert rc == 0
    said = capsys.readouterr().out
    assert "choices seen per head 1/41, 1/41, 1/41, 1/4, 1/4, 1/4; 1 distinct actions" in said
    record = json.loads((out / "train.json").read_text())
    off = record["offline"]
    assert record["action_mode"] == "target" and record["algo"] == "iql"
    assert off["coverage"]["steps"] == 48 and off["coverage"]["distinct_actions"] == 1
    assert off["library"]["d3rlpy"] == "2.8.1" and off["constant_features"] > 0
    assert (out / "tb" / "offline").is_dir()
    check_specs([f"ppo:{out}"])
    with pytest.raises(InputError, match="takes no options"):
        check_specs([f"ppo:{out}[defer_above=3]"])
    actions, reward = play(f"ppo:{out}", 77)
    static = static_target_action(77)
    assert all(a == static for a in actions)  # its counts, keep the caps
    assert reward == pytest.approx(play("static", 77)[1], abs=1e-9)


def test_offline_training_refuses_what_it_cannot_read(
    data: Path, python: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainError, match=r"'global' mode's space.*--action-space target"):
        train_offline(data, ["chiron/default-chiron-v0"], tmp_path / "a", python=python)
    with pytest.raises(TrainError, match="no dataset here"):
        train_offline(data, ["chiron/nothing-v0"], tmp_path / "b", python=python)
    with pytest.raises(TrainError, match="expected one of iql, cql, td3"):
        train_offline(data, ["chiron/default-static-v0"], tmp_path / "c", algo="bcq")
    missing = tmp_path / "no-venv" / "python"
    with pytest.raises(TrainError, match=r"no-venv/python: no Python of the offline.*offline-env"):
        train_offline(data, ["chiron/default-static-v0"], tmp_path / "d", python=missing)
    with pytest.raises(InputError, match="no offline policy here"):
        from agents.offline import OfflineAgent

        OfflineAgent.check(tmp_path)


def test_a_failed_fit_leaves_no_policy_and_a_stale_one_is_not_played(
    data: Path, tmp_path: Path
) -> None:
    """A fit that fails (here a "Python" that exits 1) removes the folder's earlier policy first,
    so its new statistics are never played beside an old policy; and a leftover ``policy.pt``
    does not make a PPO folder an offline one (the record says what the folder holds)."""
    from agents.ensemble import model_class
    from agents.offline import OfflineAgent, is_offline_folder
    from agents.ppo import PPOAgent

    out = tmp_path / "refit"
    out.mkdir()
    (out / "policy.pt").write_bytes(b"old")
    (out / "train.json").write_text(json.dumps({"offline": {"nvec": [1]}}))
    assert model_class(out) is OfflineAgent
    with pytest.raises(TrainError, match="the d3rlpy fit failed"):
        train_offline(data, ["chiron/default-static-v0"], out, steps=1, python=Path("/bin/false"))
    assert not (out / "policy.pt").exists() and not (out / "train.json").exists()
    assert not is_offline_folder(out)
    (out / "policy.pt").write_bytes(b"left over")
    (out / "train.json").write_text(json.dumps({"algo": "ppo", "action_mode": "full"}))
    assert model_class(out) is PPOAgent
