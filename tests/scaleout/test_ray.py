"""Scale-out on a real local Ray: evaluation grids, training seeds, Tune, RLlib (no mocks)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from agents.run.evaluate import EvaluationFailed, evaluate
from chiron_gym.cli import main
from tests.scaleout.conftest import QUIET

SMALL = {"horizon_s": 300.0}  # 30 decisions per episode keeps the tests quick
GRID = (["chiron", "static"], ["default", "interactive-bursty"], [0, 1])


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def grids(ray_local: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outs = {}
    for executor in ("local", "process", "ray"):
        out = tmp_path_factory.mktemp(f"grid-{executor}")
        evaluate(*GRID, out, plots=False, progress=False, env_kwargs=SMALL, executor=executor)
        outs[executor] = out
    return outs


def test_grid_gives_the_same_results_csv_under_every_executor(grids: dict[str, Path]) -> None:
    local = (grids["local"] / "results.csv").read_bytes()
    rows = list(csv.DictReader(local.decode().splitlines()))
    assert len(rows) == 8  # 2 agents x 2 scenarios x 2 seeds
    assert {(r["agent"], r["scenario"], r["seed"]) for r in rows} == {
        (a, s, str(k)) for a in GRID[0] for s in GRID[1] for k in GRID[2]
    }
    assert (grids["process"] / "results.csv").read_bytes() == local
    assert (grids["ray"] / "results.csv").read_bytes() == local


def test_grid_gives_the_same_tensorboard_runs_under_ray(grids: dict[str, Path]) -> None:
    for run in ("default/chiron/seed1", "interactive-bursty/static/seed0"):
        local = _scalars(grids["local"] / "tb" / run)
        assert "episode/interactive_attainment" in local and len(local["reward/step"]) == 30
        assert _scalars(grids["ray"] / "tb" / run) == local


def _broken_model(tmp: Path) -> Path:
    bad = tmp / "broken-ppo"
    bad.mkdir()
    (bad / "model.zip").write_bytes(b"not a zip file")
    return bad


def test_a_failed_episode_is_named_and_the_others_are_kept(ray_local: Any, tmp_path: Path) -> None:
    bad = _broken_model(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(EvaluationFailed) as info:
        evaluate(
            ["static", f"ppo:{bad}"],
            ["default"],
            [0, 1],
            out,
            **QUIET,
            env_kwargs=SMALL,
            executor="ray",
        )
    failures = info.value.failures
    assert [(f["agent"], f["scenario"], f["seed"]) for f in failures] == [
        (f"ppo:{bad}", "default", 0),
        (f"ppo:{bad}", "default", 1),
    ]
    assert all(f["error"] for f in failures)
    assert json.loads((out / "failures.json").read_text()) == failures
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert [(r["agent"], r["seed"]) for r in rows] == [("static", "0"), ("static", "1")]


def test_cli_evaluate_on_ray_reports_the_failed_task(
    ray_local: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Trusted, the model is not opened before the grid starts, so the broken file fails inside
    # its Ray task (untrusted, the CLI refuses it up front with exit 2: tests/test_bad_input.py).
    monkeypatch.setenv("CHIRON_TRUST_MODELS", "1")
    bad = _broken_model(tmp_path)
    out = tmp_path / "cli"
    args = ["evaluate", "--agents", f"static,ppo:{bad}", "--scenarios", "default"]
    args += ["--seeds", "0", "--out", str(out), "--no-plots", "--no-tensorboard"]
    assert main([*args, "--executor", "ray"]) == 1
    err = capsys.readouterr().err
    assert f"agent ppo:{bad}, scenario default, seed 0" in err and "1 of 2 episodes" in err
    assert "static,default,0," in (out / "results.csv").read_text()


def _hp(tmp: Path) -> Path:
    p = tmp / "hp.yml"
    p.write_text(
        "default:\n  n_steps: 64\n  batch_size: 32\n  n_epochs: 2\n  learning_rate: 3.0e-4\n"
        '  normalize: true\n  policy_kwargs: "dict(net_arch=[32, 32])"\n'
    )
    return p


def test_training_seeds_run_as_ray_tasks(
    ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    args = ["train", "ppo", "--scenario", "default", "--timesteps", "128", "--seeds", "0-1"]
    args += ["--hyperparams", str(_hp(tmp_path)), "--eval-freq", "0", "--out", str(out)]
    assert main([*args, "--executor", "ray"]) == 0
    printed = capsys.readouterr().out
    for k in (0, 1):
        run = out / f"seed{k}"
        assert f"{run.resolve()}: trained 128 steps" in printed
        assert (run / "model.zip").is_file() and (run / "vecnormalize.pkl").is_file()
        assert json.loads((run / "train.json").read_text())["seed"] == k
        assert any((run / "tb").rglob("events.out.tfevents.*")), "its own TensorBoard run"


def test_a_run_on_another_host_ships_its_files_back(tmp_path: Path) -> None:
    """The multi-node path: the task trains in a temporary folder and returns the files."""
    from agents.train.ppo import train_task

    kwargs = {"hyperparams": _hp(tmp_path), "eval_freq": 0, "checkpoint_freq": 0}
    kwargs |= {"progress": False, "env_kwargs": SMALL}
    result, files = train_task("default", 64, 3, str(tmp_path / "x"), "another-host", kwargs)
    assert files is not None and {"model.zip", "vecnormalize.pkl", "train.json"} <= set(files)
    assert result.out == tmp_path / "x" and not (tmp_path / "x").exists()


def test_tune_two_trials_reports_a_best_trial(
    ray_local: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.train.tune import METRIC

    space = tmp_path / "space.yml"
    space.write_text(
        "learning_rate: {loguniform: [1.0e-4, 1.0e-3]}\nn_steps: {choice: [64, 128]}\n"
        'batch_size: 32\nn_epochs: 2\npolicy_kwargs: "dict(net_arch=[32, 32])"\n'
    )
    out = tmp_path / "tune"
    args = ["tune", "ppo", "--scenario", "default", "--trials", "2", "--timesteps", "2000"]
    args += ["--space", str(space), "--compare-seeds", "0", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    best = json.loads((out / "best.json").read_text())
    trials = list(csv.DictReader((out / "trials.csv").read_text().splitlines()))
    assert len(trials) == 2 and all(math.isfinite(float(t[METRIC])) for t in trials)
    assert best[METRIC] == max(float(t[METRIC]) for t in trials)
    assert f"best trial {best['trial']}: {METRIC}" in printed and "| chiron |" in printed
    assert 1.0e-4 <= best["hyperparams"]["learning_rate"] <= 1.0e-3
    assert best["hyperparams"]["n_steps"] in (64, 128)
    assert (out / "best" / "model.zip").is_file()
    rows = list(csv.DictReader((out / "vs-chiron" / "results.csv").read_text().splitlines()))
    assert [r["agent"] for r in rows] == ["chiron", f"ppo:{out.resolve() / 'best'}"]


def test_rllib_ppo_trains_two_iterations_on_the_env(ray_local: Any) -> None:
    from agents.train.rllib_ppo import train

    rows = train(
        2,
        "default",
        env_config=SMALL,
        num_env_runners=1,
        train_batch_size=200,
        minibatch_size=50,
        num_epochs=2,
    )
    assert [r["iteration"] for r in rows] == [1, 2]
    assert rows[0]["env_steps"] >= 200 and rows[1]["env_steps"] > rows[0]["env_steps"]
    assert rows[1]["episode_len_mean"] == 30  # the scenario's 300 s at 10 s per decision
    assert all(math.isfinite(r["episode_return_mean"]) for r in rows)
