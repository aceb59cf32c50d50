"""Bad input, tried as a careful user and as an adversary would: every case exits 2 (or, in the
environment, raises) with a message naming the file, field or line and what was expected, and
no traceback (``docs/agents.md``, "Errors")."""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import scenarios
from chiron_gym.cli import main

DEFAULT = scenarios.path("default").read_text()
PROFILE = Path(__file__).resolve().parents[1] / "chiron_gym/profiles/data/a100-llama3-8b-tp1.json"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AZURE_ROW = "2023-11-16 18:15:46.6805900,374,44\n"


def chiron(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``chiron ARGS``; its exit code and what it wrote to stderr."""
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = int(e.code or 0)
    err = capsys.readouterr().err
    return code, err


def edited(old: str, new: str) -> Callable[[Path], Path]:
    """A scenario: ``default`` with ``old`` replaced by ``new``."""

    def make(tmp: Path) -> Path:
        assert old in DEFAULT, old
        p = tmp / "s.toml"
        p.write_text(DEFAULT.replace(old, new, 1))
        return p

    return make


def raw(data: bytes, name: str = "s.toml") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(data)
        return p

    return make


def profile_with(change: Callable[[dict], None]) -> Callable[[Path], Path]:  # type: ignore[type-arg]
    """A scenario whose instance profile is a copy of a shipped one, changed."""

    def make(tmp: Path) -> Path:
        doc = json.loads(PROFILE.read_text())
        change(doc)
        (tmp / "p.json").write_text(json.dumps(doc))
        p = tmp / "s.toml"
        p.write_text(DEFAULT.replace('"a100-llama3-8b-tp1"', '"p.json"', 1))
        return p

    return make


def _negative_constant(doc: dict) -> None:  # type: ignore[type-arg]
    doc["iteration"]["cpu"]["const_s"] = -0.5


POISSON = 'kind = "poisson", rate_per_s = 6.0'
BULK = 'kind = "bulk", count = 3000, first_s = 0.0'
LOGNORMAL = 'kind = "lognormal", mean = 1000, cv = 1.0, high = 8000'

SCENARIO_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("missing file", lambda t: t / "nope.toml", r"nope\.toml: cannot read"),
    ("a folder", lambda t: t, r"a folder; expected a scenario name or a \.toml file"),
    ("not UTF-8", raw(b"\xff\xfe\x00bad"), r"s\.toml: not UTF-8 text"),
    ("not TOML", raw(b"horizon_s = = 3\n"), r"s\.toml: not valid TOML"),
    ("unknown key", edited("horizon_s", "horizon_sec"), r"unknown key 'horizon_sec'"),
    ("low > high", edited(LOGNORMAL, LOGNORMAL + ", low = 9000"), r"prompt\.high = 8000"),
    ("absurd length", edited("high = 8000", "high = 100000000"), r"at most 10,000,000 tokens"),
    (
        "piecewise not from 0",
        edited(POISSON, 'kind = "piecewise", starts_s = [5.0, 10.0], rates_per_s = [1.0, 2.0]'),
        r"arrival\.starts_s = .*a first start of 0",
    ),
    (
        "piecewise negative rate",
        edited(POISSON, 'kind = "piecewise", starts_s = [0.0, 10.0], rates_per_s = [1.0, -2.0]'),
        r"arrival\.rates_per_s = .*rates >= 0",
    ),
    (
        "piecewise not increasing",
        edited(POISSON, 'kind = "piecewise", starts_s = [0.0, 10.0, 5.0], rates_per_s = [1, 2, 3]'),
        r"arrival\.starts_s = .*increasing start times",
    ),
    (
        "missing ServeGen file",
        edited(POISSON, 'kind = "servegen", path = "nope.csv"'),
        r"arrival\.path = .*an existing ServeGen rate file",
    ),
    ("bulk count 1e9", edited(BULK, BULK.replace("3000", "1000000000")), r"arrival\.count"),
    ("bulk every 1e-7 s", edited(BULK, BULK + ", every_s = 1e-7"), r"arrival\.every_s"),
    (
        "diurnal period 1e-6 s",
        edited(
            POISSON, 'kind = "diurnal", mean_rate_per_s = 6.0, amplitude = 0.5, period_s = 1e-6'
        ),
        r"arrival\.period_s",
    ),
    ("rate 1e9", edited("rate_per_s = 6.0", "rate_per_s = 1e9"), r"arrival\.rate_per_s"),
    ("NaN rate", edited("rate_per_s = 6.0", "rate_per_s = nan"), r"arrival\.rate_per_s"),
    ("negative horizon", edited("horizon_s = 600.0", "horizon_s = -600.0"), r"horizon_s"),
    (
        "negative failure rate",
        edited("initial = 2\n", "initial = 2\nfailures_per_gpu_hour = -1.0\n"),
        r"pools\.interactive\.failures_per_gpu_hour = -1\.0: expected a number >= 0",
    ),
    (
        "failure of a pool the scenario lacks",
        edited(
            "[pools.interactive]",
            '[failures]\nat = [{ t_s = 5.0, pool = "gpu" }]\n\n[pools.interactive]',
        ),
        r"failures\.at\[0\]\.pool = 'gpu': expected one of 'interactive'",
    ),
    (
        "negative reclaim notice",
        edited("initial = 2\n", "initial = 2\nreclaim_notice_s = -30.0\n"),
        r"pools\.interactive\.reclaim_notice_s = -30\.0: expected a number >= 0",
    ),
    (
        "unknown failure policy",
        edited(
            "[pools.interactive]",
            '[failures]\non_instance_failure = "retry"\n\n[pools.interactive]',
        ),
        r"failures\.on_instance_failure = 'retry': expected one of 'requeue', 'reject'",
    ),
    (
        "prefix_caching not a boolean",
        edited("max_batch_cap = 256", 'max_batch_cap = 256\nprefix_caching = "yes"'),
        r"instance\.prefix_caching = 'yes': expected true or false",
    ),
    (
        "sleep_cost above 1",
        edited("[pools.batch]\ninitial = 2", "[pools.batch]\nsleep_cost = 2.0\ninitial = 2"),
        r"pools\.batch\.sleep_cost = 2\.0: expected a number in \[0, 1\]",
    ),
    (
        "warm pool negative",
        edited("[pools.batch]\ninitial = 2", "[pools.batch]\nwarm = -1\ninitial = 2"),
        r"pools\.batch\.warm = -1: expected an integer >= 0",
    ),
    (
        "cold start phases with a median",
        edited(
            "max_batch_cap = 256",
            "max_batch_cap = 256\ncold_start = { median_s = 60.0, phases = { w = 5.0 } }",
        ),
        r"cold_start\.median_s = 60\.0: expected absent when phases are given",
    ),
    (
        "prompt hashes of two sizes",
        edited(
            "high = 2000 }\n\n[[workload]]",
            "high = 2000 }\nprefix = { block_tokens = 32 }\n\n[[workload]]\n"
            "prefix = { block_tokens = 64 }",
        ),
        r"workload\[1\]\.prefix\.block_tokens = 64: expected 32, as workload\[0\]",
    ),
    (
        "prompt hashes not whole KV blocks",
        lambda t: (
            (t / "s.toml").write_text(
                DEFAULT.replace(
                    "max_batch_cap = 256", "max_batch_cap = 256\nprefix_caching = true"
                ).replace(
                    "high = 2000 }\n\n", "high = 2000 }\nprefix = { block_tokens = 24 }\n\n", 1
                )
            )
            and t / "s.toml"
        ),
        r"workload\[0\]\.prefix\.block_tokens = 24: expected a multiple of the KV block size",
    ),
    (
        "negative profile constant",
        profile_with(_negative_constant),
        r"p\.json: iteration: .* expected a positive time",
    ),
    (
        "binary profile",
        lambda t: (
            (
                (t / "p.json").write_bytes(b"\x89PNG\x00\xff"),
                (t / "s.toml").write_text(DEFAULT.replace('"a100-llama3-8b-tp1"', '"p.json"', 1)),
            )
            and t / "s.toml"
        ),
        r"p\.json: cannot read profile: not UTF-8",
    ),
    (
        "unknown profile",
        edited('"a100-llama3-8b-tp1"', '"a100-llama3-8b-tp9"'),
        r"instance\.profile = 'a100-llama3-8b-tp9'",
    ),
]


def _trace(text: str, name: str = "t.csv") -> Callable[[Path], Path]:
    return raw(text.encode(), name)


_gzip = raw(gzip.compress((AZURE_HEADER + AZURE_ROW).encode()), "t.csv.gz")


TRACE_CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("gzip", _gzip, r"t\.csv\.gz: a gzip file; expected a text trace"),
    ("binary", raw(b"\x00\xff\xfe\x80" * 50, "t.csv"), r"t\.csv: not UTF-8 text"),
    (
        "200 KB field",
        _trace(AZURE_HEADER + "2023-11-16 18:15:46.6805900," + "9" * 200_000 + ",5\n"),
        r"t\.csv:2: not a CSV row",
    ),
    (
        "1e30 tokens",
        _trace(AZURE_HEADER + "2023-11-16 18:15:46.6805900,1e30,5\n"),
        r"t\.csv:2: column 'ContextTokens' = '1e30': expected at most 10,000,000 tokens",
    ),
    (
        "negative tokens",
        _trace(AZURE_HEADER + "2023-11-16 18:15:46.6805900,-4,5\n"),
        r"t\.csv:2: column 'ContextTokens' = '-4': expected >= 0",
    ),
    ("missing", lambda t: t / "absent.csv", r"absent\.csv: trace file not found"),
    (
        "unknown header",
        _trace("when,in,out\n1,2,3\n"),
        r"t\.csv:1: cannot tell the trace format",
    ),
    (
        "Mooncake line not JSON",
        _trace('{"timestamp": 0, "input_length": 5, "output_length": 3}\n{oops\n', "t.jsonl"),
        r"t\.jsonl:2: not a JSON object",
    ),
    (
        "Mooncake hash_ids not integers",
        _trace('{"timestamp": 0, "input_length": 5, "output_length": 3, "hash_ids": ["a"]}\n'),
        r"t\.csv:1: hash_ids: expected a list of integers",
    ),
]


FILE_CASES = [("--scenario", *c) for c in SCENARIO_CASES] + [("--trace", *c) for c in TRACE_CASES]


@pytest.mark.parametrize(
    ("flag", "case", "make", "expected"), FILE_CASES, ids=[f"{c[0]} {c[1]}" for c in FILE_CASES]
)
def test_bad_files_exit_2_naming_the_field_or_line(
    flag: str,
    case: str,
    make: Callable[[Path], Path],
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Scenarios (their keys), profiles and traces (their lines): exit 2, one line."""
    code, err = chiron(capsys, "simulate", flag, str(make(tmp_path)))
    assert code == 2, (case, err)
    assert err.startswith("chiron: ") and "Traceback" not in err, err
    assert re.search(expected, err), err


def test_a_bom_before_the_header_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not an error: a UTF-8 byte-order mark before a trace's header (or a scenario) is
    skipped."""
    p = tmp_path / "t.csv"
    p.write_bytes(b"\xef\xbb\xbf" + (AZURE_HEADER + AZURE_ROW * 3).encode())
    code, err = chiron(capsys, "simulate", "--trace", str(p), "--json")
    assert code == 0, err
    s = tmp_path / "s.toml"
    s.write_bytes(b"\xef\xbb\xbf" + DEFAULT.encode())
    assert chiron(capsys, "simulate", "--scenario", str(s))[0] == 0


FLAG_CASES: list[tuple[list[str], str]] = [
    (["simulate", "--rate-scale", "0"], r"--rate-scale: '0': expected a number > 0"),
    (["simulate", "--rate-scale", "nan"], r"--rate-scale: 'nan': expected a number > 0"),
    (["simulate", "--time-scale", "-1"], r"--time-scale: '-1': expected a number > 0"),
    (["simulate", "--batch-deadline-s", "nan"], r"--batch-deadline-s: 'nan'"),
    (["simulate", "--batch-deadline-s", "-5"], r"--batch-deadline-s: '-5'"),
    (["simulate", "--seed", "-1"], r"--seed: '-1': expected an integer >= 0"),
    (
        ["simulate", "--trace", "data:azure-llm-2023/absent.csv"],
        r"azure-llm-2023/absent\.csv: trace file not found",
    ),
    (  # data:REL resolved under the data root, as for scenarios and simulate --trace
        ["trace", "stats", "data:azure-llm-2023/absent.csv"],
        r"data/azure-llm-2023/absent\.csv: trace file not found",
    ),
    (
        ["simulate", "--batch-fraction", "2"],
        r"--batch-fraction: '2': expected a number >= 0 and <= 1",
    ),
    (["evaluate", "--seeds", "3-1"], r"--seeds: .*the range 3-1 is empty"),
    (["evaluate", "--seeds", "0-1000000000"], r"--seeds: .*more than 10,000 seeds"),
    (["evaluate", "--seeds", "0,0"], r"--seeds: .*listed twice"),
    (["evaluate", "--seeds", "x"], r"--seeds: seeds 'x': expected a range"),
    (["evaluate", "--agents", "chiron,chiron"], r"--agents: chiron listed twice"),
    (["evaluate", "--scenarios", "default,default"], r"--scenarios: default listed twice"),
    (["evaluate", "--agents", "chirn"], r"unknown agent 'chirn'"),
    (["evaluate", "--agents", "ppo:/nonexistent/model"], r"/nonexistent/model does not exist"),
    (["evaluate", "--server-option", "model=/m"], r"--server-option: only with --backend vllm"),
    (["evaluate", "--backend", "vllm"], r"--backend vllm: give --server-option model=PATH"),
    (
        ["evaluate", "--backend", "vllm", "--server-option", "gpu=1"],
        r"--server-option 'gpu=1': expected KEY=VALUE with KEY one of model, python",
    ),
    (
        ["evaluate", "--backend", "vllm", "--server-option", "max_num_seqs=many"],
        r"--server-option max_num_seqs='many': expected int",
    ),
    (
        ["evaluate", "--backend", "vllm", "--server-option", "max_num_seqs=0"],
        r"--server-option max_num_seqs=0: expected a positive number",
    ),
    (
        ["evaluate", "--backend", "vllm", "--server-option", "model=/nonexistent/tiny"],
        r"--server-option model=/nonexistent/tiny: no such file or folder",
    ),
    (
        ["evaluate", "--backend", "vllm", "--endpoint", "localhost:8000"],
        r"--endpoint 'localhost:8000': expected POOL=http://HOST:PORT",
    ),
    (
        ["evaluate", "--backend", "vllm", "--executor", "ray", "--endpoint", "x=http://h:1"],
        r"--executor ray: --backend vllm runs episodes one at a time",
    ),
]


@pytest.mark.parametrize(("args", "expected"), FLAG_CASES, ids=[" ".join(c[0]) for c in FLAG_CASES])
def test_bad_flags_exit_2_naming_the_flag(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--out", str(tmp_path / "out")] if args[0] == "evaluate" else []
    code, err = chiron(capsys, *args, *extra)
    assert code == 2, err
    assert "Traceback" not in err and re.search(expected, err), err


def test_out_that_is_a_file_fails_before_any_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "taken"
    f.write_text("")
    code, err = chiron(capsys, "evaluate", "--agents", "static", "--out", str(f))
    assert code == 2 and "expected a folder, found a file" in err, err


def test_unwritable_out_fails_before_any_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: nothing to test
            pytest.skip("running as a user who can write to a read-only folder (root)")
        code, err = chiron(capsys, "evaluate", "--agents", "static", "--out", str(locked / "x"))
        assert code == 2 and "cannot write there" in err, err
        assert not (locked / "x").exists()
    finally:
        locked.chmod(0o700)


# ----------------------------------------------------------------------- the environment


def _env():  # type: ignore[no-untyped-def]
    from chiron_gym.envs import AutoscaleEnv

    env = AutoscaleEnv("default", horizon_s=30.0)
    env.reset(seed=0)
    return env


ENV_CASES: list[tuple[str, Callable[[], object], str]] = [
    (
        "max_step_change 1.5",
        lambda: __import__("chiron_gym.envs", fromlist=["x"]).AutoscaleEnv(
            "default", max_step_change=1.5
        ),
        r"max_step_change must be an integer >= 1, got 1\.5",
    ),
    (
        "action of shape (2, 3)",
        lambda: _env().step(np.ones((2, 3), int)),
        r"action of shape \(2, 3\)",
    ),
    ("action 2.9", lambda: _env().step(np.array([2.9, 2, 2, 1, 1, 1])), r"not fractions"),
    ("NaN action", lambda: _env().step(np.array([math.nan, 2, 2, 1, 1, 1])), r"expected integer"),
    ("action out of range", lambda: _env().step(np.array([9, 2, 2, 1, 1, 1])), r"action\[0\] = 9"),
    (
        "NaN reward weight",
        lambda: __import__("chiron_gym.envs", fromlist=["x"]).AutoscaleEnv(
            "default", reward_weights={"gpu_cost": math.nan}
        ),
        r"reward weight 'gpu_cost' = nan: expected a number >= 0",
    ),
    (
        "negative reward weight",
        lambda: __import__("chiron_gym.envs", fromlist=["x"]).AutoscaleEnv(
            "default", reward_weights={"violation": -1.0}
        ),
        r"reward weight 'violation' = -1\.0",
    ),
    (
        "unknown reward weight",
        lambda: __import__("chiron_gym.envs", fromlist=["x"]).AutoscaleEnv(
            "default", reward_weights={"gpu_costs": 1.0}
        ),
        r"unknown reward weight 'gpu_costs'",
    ),
    (
        "infinite horizon",
        lambda: __import__("chiron_gym.envs", fromlist=["x"]).AutoscaleEnv(
            "default", horizon_s=math.inf
        ),
        r"horizon_s must be a finite number > 0, got inf",
    ),
]


@pytest.mark.parametrize(("case", "call", "expected"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_bad_env_arguments_and_actions_raise_naming_them(
    case: str, call: Callable[[], object], expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        call()


def test_step_after_the_end_raises_as_order_enforcing_expects() -> None:
    import gymnasium as gym

    from chiron_gym.envs import AutoscaleEnv

    env = AutoscaleEnv("default", horizon_s=20.0, decision_interval_s=10.0)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.array([2, 2, 2, 1, 1, 1]))  # before reset
    env.reset(seed=0)
    truncated = False
    while not truncated:
        truncated = env.step(np.array([2, 2, 2, 1, 1, 1]))[3]
    with pytest.raises(gym.error.ResetNeeded, match="after the episode ended"):
        env.step(np.array([2, 2, 2, 1, 1, 1]))
    env.reset(seed=0)
    env.step(np.array([2, 2, 2, 1, 1, 1]))  # a new episode steps again


def test_trace_replicated_past_the_limit_names_rate_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "t.csv"
    p.write_text(AZURE_HEADER + AZURE_ROW * 10)
    code, err = chiron(capsys, "simulate", "--trace", str(p), "--rate-scale", "1e7")
    assert code == 2 and "rate_scale = 1e+07: expected at most 1e+06" in err, err


def test_evaluate_takes_scenarios_by_absolute_and_relative_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output folders come from a safe slug of the scenario, whatever the path."""
    sc = tmp_path / "sc" / "mine.toml"
    sc.parent.mkdir()
    sc.write_text(DEFAULT.replace("horizon_s = 600.0", "horizon_s = 30.0"))
    monkeypatch.chdir(tmp_path)
    for spec in (str(sc), "sc/mine.toml"):
        out = tmp_path / ("out" + str(len(spec)))
        code = main(["evaluate", "--agents", "static", "--scenarios", spec, "--out", str(out),
                     "--executor", "local"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        assert (out / "results.csv").read_text().count("\n") == 2
        plots = list((out / "plots").rglob("*.png"))
        assert plots and all(p.resolve().is_relative_to(out.resolve()) for p in plots)


def test_profile_path_is_relative_to_the_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As trace paths are: ``profile = "p.json"`` beside the scenario, from any folder."""
    (tmp_path / "p.json").write_text(PROFILE.read_text())
    s = tmp_path / "s.toml"
    s.write_text(DEFAULT.replace('"a100-llama3-8b-tp1"', '"p.json"', 1))
    monkeypatch.chdir(Path("/"))
    code, err = chiron(capsys, "simulate", "--scenario", str(s))
    assert code == 0, err
