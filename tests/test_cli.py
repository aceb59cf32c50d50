"""The ``chiron`` command: the documented JSON fields, and byte-identical output per seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chiron_gym.cli import main

CLASS_FIELDS = {
    "arrived",
    "met",
    "late",
    "rejected",
    "pending",
    "attainment",
    "ttft_p50_s",
    "ttft_p95_s",
    "ttft_p99_s",
    "itl_p50_s",
    "itl_p95_s",
    "itl_p99_s",
}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["simulate", *args, "--json"]) == 0
    return capsys.readouterr().out


def test_simulate_json_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """``simulate --json`` prints one object with the per-class fields and the totals."""
    out = json.loads(run_json(capsys, "--scenario", "default", "--seed", "0"))
    assert out["scenario"] == "default" and out["seed"] == 0
    for name in ("interactive", "batch"):
        row = out["classes"][name]
        assert set(row) >= CLASS_FIELDS
        assert row["met"] + row["late"] + row["rejected"] + row["pending"] == row["arrived"]
        assert row["arrived"] > 0
    assert out["gpu_hours"] > 0 and out["sim_seconds"] == 600.0 and out["wall_seconds"] > 0


def test_same_seed_same_bytes_except_wall_time(capsys: pytest.CaptureFixture[str]) -> None:
    """Determinism: the same scenario and seed give a byte-identical summary (wall time aside)."""
    outs = []
    for _ in range(2):
        obj = json.loads(run_json(capsys, "--seed", "3"))
        obj.pop("wall_seconds")
        outs.append(json.dumps(obj, sort_keys=True))
    assert outs[0] == outs[1]
    other = json.loads(run_json(capsys, "--seed", "4"))
    other.pop("wall_seconds")
    assert json.dumps(other, sort_keys=True) != outs[0]


def test_fast_forward_and_reference_agree_on_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The per-iteration reference mode gives the same summary as the default fast-forward."""
    a = json.loads(run_json(capsys, "--seed", "1"))
    b = json.loads(run_json(capsys, "--seed", "1", "--per-iteration"))
    for obj in (a, b):
        obj.pop("wall_seconds")
    assert a["classes"].keys() == b["classes"].keys()
    for name in a["classes"]:
        for key, value in a["classes"][name].items():
            other = b["classes"][name][key]
            if isinstance(value, float):
                assert value == pytest.approx(other, rel=1e-9), key
            else:
                assert value == other, key


def test_console_script_runs_in_a_fresh_process() -> None:
    """``python -m chiron_gym.cli`` works as a separate process and exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "chiron_gym.cli", "simulate", "--seed", "0"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "interactive" in proc.stdout and "batch" in proc.stdout


def test_unknown_scenario_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt scenario name fails with the nearest known name, exit code 2."""
    assert main(["simulate", "--scenario", "defualt"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'defualt'" in err and "did you mean 'default'" in err


def test_benchmark_and_dataset_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``chiron benchmark --json`` prints benchmark.json; ``chiron dataset`` names what it wrote;
    bad arguments exit 2 with the reason; a family runs in ``simulate`` as its seed's draw."""
    out = tmp_path
    suite = out / "s.toml"
    suite.write_text('[[scenario]]\nname = "d"\nspec = "family:train@5"\n')
    args = ["benchmark", "--suite", str(suite), "--seeds", "0", "--out", str(out / "b")]
    runs = "pipe=chiron[headroom_instances=3],chiron[headroom_instances=4]"  # two "runs"
    assert main([*args, "--agents", "chiron", "--json", "--executor", "local",
                 "--training-runs", runs]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    # the references: static and Chiron (the score), random and the planner (the ceiling's)
    assert {b["agent"] for b in doc["leaderboard"]} - {
        "chiron[headroom_instances=3]",
        "chiron[headroom_instances=4]",
    } == {"chiron", "static", "random", "planner"}
    # the planner took the two runs among its bases: neither is above the ceiling
    also = runs.partition("=")[2].replace(",", "|")
    assert f"planner[also={also}]" in doc["provenance"]["agents"]
    assert doc["evidence"]["normaliser"]["d"]["beaten_by"] == []
    pipe = doc["evidence"]["agents"]["pipe"]
    assert (pipe["training_runs"], pipe["seeds"], pipe["samples"]) == (2, 1, 2)
    assert main([*args, "--training-runs", "pipe=chiron"]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert main([*args, "--training-runs", "chiron[z=1],chiron[z=2]"]) == 2  # no NAME
    assert "expected NAME=SPEC" in capsys.readouterr().err
    assert main([*args, "--training-runs", "static=" + runs.partition("=")[2]]) == 2
    assert "also names an agent" in capsys.readouterr().err
    planner = next(c for c in doc["scores"] if c["agent"] == "planner")
    assert planner["reward"] == max(c["reward"] for c in doc["scores"])
    assert "iqm" in doc["evidence"]["agents"]["chiron"]
    assert main([*args, "--agents", "chirn"]) == 2
    assert "unknown agent 'chirn'" in capsys.readouterr().err
    assert main(["benchmark", "--suite", "nope", "--out", str(out / "c")]) == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    ds = ["dataset", "--agents", "static", "--family", "train", "--horizon-s", "60"]
    assert main([*ds, "--episodes", "2", "--out", str(out / "d")]) == 0
    assert "chiron/train-static-v0: 2 episodes, 12 steps" in capsys.readouterr().out
    assert main([*ds, "--episodes", "0", "--out", str(out / "d")]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err
    # behaviour cloning reads the target space only, and says which dataset is not in it
    assert main([*ds, "--episodes", "2", "--action-space", "target", "--out", str(out / "t")]) == 0
    capsys.readouterr()
    bc = ["train", "bc", "chiron/train-static-v0", "--epochs", "2"]
    assert main([*bc, "--data", str(out / "t"), "--out", str(out / "bc")]) == 0
    assert "cloned from 12 steps" in capsys.readouterr().out
    assert main([*bc, "--data", str(out / "d"), "--out", str(out / "bc2")]) == 2
    assert "its actions are in the 'full' mode's space" in capsys.readouterr().err
    assert main(["simulate", "--scenario", "family:train", "--seed", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scenario"] == "train@5"


def test_evaluate_accepts_chiron_parameters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An agent spec with parameters (docs/agents.md) passes the up-front check, which uses the
    parser ``make_agent`` builds from; a parameter Chiron lacks exits 2 naming it."""
    args = ["evaluate", "--scenarios", "default", "--seeds", "0", "--executor", "local"]
    args += ["--no-plots", "--no-tensorboard", "--json"]
    spec = "chiron[headroom_instances=4]"
    assert main([*args, "--agents", spec, "--out", str(tmp_path / "a")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["agent"] for r in rows] == [spec]
    assert main([*args, "--agents", "chiron[nope=1]", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "agent 'chiron[nope=1]': unknown parameter 'nope'" in err and "Traceback" not in err
