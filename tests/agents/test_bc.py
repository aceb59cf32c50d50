"""Behaviour cloning into a PPO model (``chiron train bc``, agents/train/bc.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.model_files import TrainError
from agents.run.dataset import collect
from agents.spec import env_kwargs_for
from agents.train.bc import clone
from tests.agents.playing import play, record_demonstrations, static_target_action


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_demonstrations(tmp_path_factory.mktemp("datasets"))


def test_a_clone_of_static_plays_as_static_on_an_unseen_seed(data: Path, tmp_path: Path) -> None:
    """Static's decisions, recorded in the target space, are one action (its counts, keep its
    caps): the clone must learn them exactly and play static's episode, step for step, on a
    traffic seed the dataset did not hold, in the dataset's environment settings."""
    out = tmp_path / "bc"
    result = clone(data, ["chiron/default-static-v0"], out, epochs=200, progress=False)
    # one of the four episodes held out, and scored: the accuracy is not the training data's
    assert result.steps == 4 * 12 and result.held_out_episodes == 1
    assert min(result.accuracy) == 1.0
    record = json.loads((out / "train.json").read_text())
    assert record["action_mode"] == "target" and record["algo"] == "maskable-ppo"
    assert record["bc"]["datasets"][0] == {
        "dataset": "chiron/default-static-v0",
        "teacher": "static",
        "episodes": 4,
        "steps": 48,
    }
    assert (out / "model.zip").is_file() and (out / "vecnormalize.npz").is_file()
    assert (out / "tb" / "bc").is_dir()
    kwargs = env_kwargs_for(f"ppo:{out}")
    assert kwargs["action_mode"] == "target"
    clone_actions, clone_reward = play(f"ppo:{out}", 77)
    static = static_target_action(77)
    assert all(a == static for a in clone_actions)  # its counts, keep the caps
    assert clone_reward == pytest.approx(play("static", 77)[1], abs=1e-9)


def test_cloning_refuses_what_it_cannot_read(data: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"'global' mode's space.*--action-space target"):
        clone(data, ["chiron/default-chiron-v0"], tmp_path / "a", epochs=1, progress=False)
    with pytest.raises(TrainError, match="no dataset here"):
        clone(data, ["chiron/nothing-v0"], tmp_path / "b", epochs=1, progress=False)
    with pytest.raises(TrainError, match="--epochs must be >= 1"):
        clone(data, ["chiron/default-static-v0"], tmp_path / "c", epochs=0, progress=False)
    # nothing held out: the accuracy is said to be the training episodes'
    r = clone(
        data, ["chiron/default-static-v0"], tmp_path / "d", epochs=1, held_out=0.0, progress=False
    )
    record = json.loads((tmp_path / "d" / "train.json").read_text())["bc"]
    assert r.held_out_episodes == 0 and record["accuracy_on"].startswith("training episodes")


def test_fine_tuning_a_clone_keeps_its_settings_and_statistics(data: Path, tmp_path: Path) -> None:
    """``chiron train ppo --init CLONE``: the run plays in the clone's settings (its teacher's
    step limit) and counts the clone's statistics as the demonstrations' steps."""
    from agents.train.ppo import train

    out = tmp_path / "bc"
    clone(data, ["chiron/default-static-v0"], out, epochs=2, progress=False)
    ft = tmp_path / "ft"
    train(
        "default",
        240,
        0,
        ft,
        action_mode="target",
        algo="maskable-ppo",
        init=out,
        eval_freq=10**9,
        checkpoint_freq=0,
        progress=False,
        env_kwargs=None,
        overrides={"n_steps": 120, "batch_size": 60, "n_epochs": 1},
    )
    record = json.loads((ft / "train.json").read_text())
    clone_record = json.loads((out / "train.json").read_text())
    assert clone_record["env_kwargs"] == {"max_step_change": 16, "horizon_s": 120.0}  # static's
    assert record["env_kwargs"] == {"max_step_change": 16}  # what acting reads, not the horizon
    # the clone's statistics counted as its demonstrations' steps
    assert record["init"]["steps"] == clone_record["bc"]["steps"] == 48


def test_teachers_that_acted_in_other_settings_are_said(data: Path, tmp_path: Path) -> None:
    """A model acting with the environment's default step limit beside static's 16: the clone
    acts in the first dataset's settings, and says so."""
    collect(
        ["ppo:agents/models/ppo-default"],
        ["default"],
        1,
        tmp_path / "data",
        horizon_s=120.0,
        progress=False,
        action_space="target",
    )
    for d in (data / "chiron").iterdir():
        if d.name.startswith("default-static"):
            import shutil

            shutil.copytree(d, tmp_path / "data" / "chiron" / d.name)
    ppo_id = next(p.name for p in (tmp_path / "data" / "chiron").iterdir() if "ppo" in p.name)
    with pytest.warns(UserWarning, match=r"acting settings \{\}.*'max_step_change': 16"):
        clone(
            tmp_path / "data",
            ["chiron/default-static-v0", f"chiron/{ppo_id}"],
            tmp_path / "bc",
            epochs=1,
            progress=False,
        )
    assert (
        json.loads((tmp_path / "bc" / "train.json").read_text())["env_kwargs"]["max_step_change"]
        == 16
    )


def test_the_planner_corrects_a_clone_that_names_counts(data: Path, tmp_path: Path) -> None:
    """A clone (target mode) as the planner's only base: planned around, never below it, and
    its plan in the target mode's space."""
    from agents.hindsight import plan

    out = tmp_path / "bc"
    clone(data, ["chiron/default-static-v0"], out, epochs=200, progress=False)
    spec = f"ppo:{out}"
    made = plan("default", 5, bases=(spec,), env_kwargs={"horizon_s": 120.0})
    assert made.base == spec and made.env_kwargs["action_mode"] == "target"
    assert made.reward >= made.bases[spec] - 1e-9
    assert made.decisions == 12 and all(len(a) == 6 for a in made.actions)
