"""The benchmark protocol: suites, the normalised score, the leaderboard, the outputs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scenarios
from agents.run import ledger
from agents.run.benchmark import benchmark, leaderboard, pareto_front, score_of, scores
from agents.run.reporting import PARAMS, read_params
from agents.run.suite import SUITES, BenchmarkError, load_suite, suite_names
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.scenario import load
from chiron_gym.sim.request import RequestClass
from chiron_gym.workload.trace import read_servegen
from tests.conftest import require_data


def _short(tmp: Path, name: str, horizon: float) -> Path:
    text = scenarios.path(name).read_text()
    text = text.replace(
        next(line for line in text.splitlines() if line.startswith("horizon_s")),
        f"horizon_s = {horizon}",
    )
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return p


def test_a_small_suite_end_to_end(tmp_path: Path) -> None:
    """static = 0 and Chiron = 1 exactly; files with provenance; strict JSON; the figure."""
    _short(tmp_path, "default", 120.0)
    _short(tmp_path, "interactive-bursty", 120.0)
    suite = tmp_path / "mini.toml"
    suite.write_text(
        'description = "two short scenarios"\n'
        '[[scenario]]\nname = "a"\nspec = "default.toml"\n'
        '[[scenario]]\nname = "b"\nspec = "interactive-bursty.toml"\n'
    )
    out = tmp_path / "out"
    result = benchmark(
        ["queue-threshold"],
        str(suite),
        [0, 1],
        out,
        executor="local",
        progress=False,
        command="chiron benchmark (test)",
    )
    cells = {(c["agent"], c["scenario"]): c for c in result["scores"]}
    # references added: static and Chiron (the score), random and the planner (the ceiling's)
    assert {a for a, _ in cells} == {"static", "chiron", "random", "planner", "queue-threshold"}
    for s in ("a", "b"):
        if cells[("chiron", s)]["chiron_above_static"]:
            assert cells[("static", s)]["score"] == pytest.approx(0.0)
            assert cells[("chiron", s)]["score"] == pytest.approx(1.0)
        assert cells[("chiron", s)]["seeds"] == 2
    assert math.isnan(cells[("chiron", "b")]["batch_attainment"])  # b has no batch work
    for name in ("leaderboard.md", "benchmark.json", "scores.csv", "pareto.png"):
        assert (out / name).is_file()
    doc = json.loads((out / "benchmark.json").read_text(), parse_constant=pytest.fail)
    prov = doc["provenance"]
    assert prov["seeds"] == [0, 1] and prov["command"] == "chiron benchmark (test)"
    assert len(prov["commit"]) >= 7 and prov["suite_sha256"]
    text = (out / "leaderboard.md").read_text()
    assert "chiron benchmark (test)" in text and "| queue-threshold |" in text
    assert (out / "episodes" / "results.csv").is_file()
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    # the evidence: a ceiling no agent beats on any seed, its score 1, intervals around estimates
    ev = doc["evidence"]
    episodes = [r for r in csv.DictReader((out / "episodes" / "results.csv").open())]
    for r in episodes:
        best = max(
            float(x["reward"])
            for x in episodes
            if x["scenario"] == r["scenario"] and x["seed"] == r["seed"]
        )
        if r["agent"] == "planner":
            assert float(r["reward"]) == pytest.approx(best, abs=1e-6)
    # the planner started from the table's episodes, handed over, not played again
    planned = [p for (a, _, _), p in read_params(out / PARAMS).items() if a == "planner"]
    assert len(planned) == 4 and all(p["bases_given"] == 4 for p in planned)
    for c in ev["cells"]:
        if c["agent"] == "planner" and "ceiling_score" in c:
            assert c["ceiling_score"] == pytest.approx(1.0)
    for name in ("static", "chiron", "random", "planner", "queue-threshold"):
        a = ev["agents"][name]
        assert a["seeds"] == 2
        if "iqm" in a:
            assert a["iqm_low"] <= a["iqm"] <= a["iqm_high"]
        if name != "chiron":
            assert 0.0 <= a["p_improve_low"] <= a["p_improve"] <= a["p_improve_high"] <= 1.0
            n = sum(a[f"scenarios_{v}"] for v in ("better", "tie", "worse"))
            assert n == 2
    assert "## Intervals" in text and "fewer than the protocol's 20" in text
    assert (out / "profiles.png").is_file() == any("iqm" in a for a in ev["agents"].values())


def test_the_sealed_suite_needs_a_purpose_and_each_run_is_a_ledger_line(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="sealed"):
        benchmark(["chiron"], "test", [0], tmp_path / "o", executor="local", progress=False)
    assert not (tmp_path / "o" / "episodes").exists()  # refused before any episode
    scores = tmp_path / "scores.csv"
    scores.write_text("agent,reward\nchiron,1\n")
    book = tmp_path / "ledger.csv"
    sealed = load_suite("test")

    def run(commit: str, agents: list[str], purpose: str) -> dict[str, str]:
        return ledger.append(
            suite=sealed,
            commit=commit,
            command="c",
            agents=agents,
            seeds="0-19",
            purpose=purpose,
            path=book,
        )

    first = run("abc", ["static", "chiron"], "p1")
    assert first["scores_csv_sha256"] == ledger.UNFINISHED  # written before any episode
    ledger.finish(first, scores, path=book)
    second = run("abd", ["chiron", "ppo:x"], "p2")  # a run that never finishes keeps its line
    assert first["new_candidates"] == "static;chiron" and second["new_candidates"] == "ppo:x"
    rows = ledger.read(book)
    assert [r["purpose"] for r in rows] == ["p1", "p2"]
    assert rows[0]["scores_csv_sha256"] == hashlib.sha256(scores.read_bytes()).hexdigest()
    assert rows[1]["scores_csv_sha256"] == ledger.UNFINISHED
    assert ledger.candidates(rows) == ["static", "chiron", "ppo:x"]
    assert tuple(rows[0]) == ledger.FIELDS and rows[0]["suite_sha256"] == sealed.sha256
    # the committed ledger has the same columns, and every line a purpose and a commit
    committed = ledger.read()
    assert committed and all(r["purpose"] and len(r["commit"]) == 40 for r in committed)


def test_score_and_leaderboard_arithmetic() -> None:
    assert score_of(5.0, 1.0, 3.0) == 2.0 and score_of(1.0, 1.0, 3.0) == 0.0
    assert math.isnan(score_of(1.0, 2.0, 2.0))
    rows = []
    for agent, rewards, att in (
        ("static", (0.0, 0.0), 0.90),
        ("chiron", (10.0, -5.0), 0.95),
        ("x", (20.0, 0.0), 0.945),
        ("y", (10.0, -6.0), 0.95),  # Chiron's reward on p: a tie, not a win
    ):
        for s, r in zip(("p", "q"), rewards, strict=True):
            rows.append(
                {
                    "agent": agent,
                    "scenario": s,
                    "reward": r,
                    "interactive_attainment": att,
                    "batch_attainment": 1.0,
                    "gpu_hours": 1.0,
                    "interactive_at_risk": 0,
                    "batch_at_risk": 0,
                    "batch_arrived": 1,
                }
            )
    cells = scores(rows, {})
    board = {b["agent"]: b for b in leaderboard(cells)}
    # q: Chiron below static, left out of the mean; p: x scores 2
    assert board["x"]["mean_score"] == pytest.approx(2.0) and board["x"]["scored"] == 1
    assert board["x"]["beats_chiron"] == 2
    assert board["x"]["beats_chiron_within_1pt"] == 2  # 0.5 points below Chiron
    assert board["x"]["ties_chiron"] == 0 and board["chiron"]["ties_chiron"] == 0
    assert board["y"]["beats_chiron"] == 0 and board["y"]["ties_chiron"] == 1
    assert pareto_front([(1.0, 0.5), (2.0, 0.9), (1.5, 0.4), (3.0, 0.9)]) == [0, 1]


def test_scores_do_not_depend_on_the_order_episodes_finished() -> None:
    """A process pool hands episodes back as they finish; the means are taken in seed order, so
    the same episodes give the same figures to the last bit (these floats' sum depends on order)."""
    values = [0.1, 1e16, 0.7, -1e16, 0.3]
    rows = [
        {
            "agent": a,
            "scenario": "p",
            "seed": seed,
            "reward": v if a == "x" else float(seed),
            "interactive_attainment": v,
            "batch_attainment": 1.0,
            "gpu_hours": v,
            "interactive_at_risk": 0,
            "batch_at_risk": 0,
            "batch_arrived": 1,
        }
        for a in ("static", "chiron", "x")
        for seed, v in enumerate(values)
    ]
    shuffled = [rows[i] for i in (4, 2, 0, 3, 1, 9, 7, 5, 8, 6, 14, 12, 10, 13, 11)]
    assert sum(values) != sum(values[i] for i in (4, 2, 0, 3, 1))  # order matters for these
    assert scores(shuffled, {}) == scores(rows, {})


def test_suite_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="unknown suite 'tset'"):
        load_suite("tset")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[scenario]]\nname = "a"\n')
    with pytest.raises(BenchmarkError, match=r"bad.toml: scenario\[0\]: expected exactly"):
        load_suite(str(bad))
    bad.write_text('[[scenario]]\nname = "a"\nspec = "x"\n[[scenario]]\nname = "a"\nspec = "y"\n')
    with pytest.raises(BenchmarkError, match="used twice"):
        load_suite(str(bad))
    with pytest.raises(BenchmarkError, match="listed twice"):
        benchmark(["chiron", "chiron"], "train", [0], tmp_path / "o")
    assert {"test", "train", "val", "val2"} <= set(suite_names())


def test_the_sealed_and_the_retired_test_suites_load_and_start() -> None:
    """Every scenario of the sealed test suite (unseen ServeGen clients on an unseen day, and a
    reasoning client) and of the retired first one loads and starts (needs ../shared/data); no
    agent runs here: the sealed suite is run only by a ledger line."""
    require_data("azure-llm-2023/AzureLLMInferenceTrace_code.csv")
    require_data("servegen/reason/deepseek-r1/chunk-35-trace.csv")
    sealed = load_suite("test")
    assert [n for n, _ in sealed.scenarios] == [
        "sg73-day9",
        "sg21-day9-batch",
        "sg41-day9-70b",
        "r1-35-reason",
    ]
    retired = load_suite(str(SUITES / "retired" / "test-1.toml"))
    assert len(retired.scenarios) == 6
    for name, spec in sealed.scenarios + retired.scenarios:
        sc = load(spec)
        env = AutoscaleEnv(sc, horizon_s=30.0)
        env.reset(seed=0)
        env.step(np.asarray(env.layout.nvec) // 2)  # no change
        assert sc.horizon_s >= 1000.0, name
    assert len(load(retired.scenarios[0][1]).workload(0)) == 8819  # the Azure code trace
    # the sealed suite's traffic differs from seed to seed (ServeGen's windows are drawn anew)
    first = load(sealed.scenarios[0][1])
    assert len(first.workload(0)) != len(first.workload(1))


@pytest.mark.parametrize(
    ("suite_name", "clients"),
    [("val", ["142", "61", "104", "143"]), ("val2", ["148", "112", "120", "34"])],
)
def test_the_validation_suites_play_servegen_days_in_two_hours(
    suite_name: str, clients: list[str]
) -> None:
    """The ``val`` and ``val2`` suites' four ServeGen clients each load, start, and carry a day's
    requests in 2 hours at about the stated 6 req/s mean (needs ../shared/data)."""
    require_data("servegen/language/m-large/chunk-142-trace.csv")
    suite = load_suite(suite_name)
    assert [name for name, _ in suite.scenarios] == [f"servegen-{c}" for c in clients]
    for i, (name, spec) in enumerate(suite.scenarios):
        sc = load(spec)
        assert sc.horizon_s == 7200.0, name
        assert len(sc.sources) == (2 if i in (1, 3) else 1), name  # the 2nd and 4th: a batch job
        w = sc.workload(0)
        interactive = w.arrival_s[w.klass == int(RequestClass.INTERACTIVE)]
        # a day at a 6 req/s mean in 2 hours: 43,200 requests in expectation (renewal noise at
        # the windows' real CVs, up to 34, moves a seed's count by several percent)
        assert 0.8 * 43_200 < len(interactive) < 1.25 * 43_200, (name, len(interactive))
        # the file's windows on the 12x faster clock: 50 s each, the idle ones empty, and the
        # last request in the day's last busy window
        src = sc.sources[0].arrival
        curve = read_servegen(src["path"])
        assert src["time_scale"] == pytest.approx(1 / 12)
        rates = np.asarray(curve.rates_per_s[:144])
        # the day's mean scaled to 6 req/s on the 12x faster clock
        assert src["rate_scale"] == pytest.approx(6 / 12 / rates.mean(), rel=1e-3), name
        window = np.minimum((interactive // 50.0).astype(int), 143)
        assert np.all(rates[window] > 0), name
        assert window.max() == np.flatnonzero(rates > 0).max(), name
        env = AutoscaleEnv(sc, horizon_s=30.0)
        env.reset(seed=0)
        env.step(np.asarray(env.layout.nvec) // 2)


def test_a_run_interrupted_in_either_phase_resumes_to_the_same_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--resume`` after a run lost episodes of the table (phase 1) and of the planner (phase
    2): the missing ones run again, and only they (the first phase's rewrite of results.csv
    once dropped the planner's finished episodes, which then all ran again), the planner from
    the handed-over episodes, and the scores are those of the uninterrupted run."""
    _short(tmp_path, "default", 120.0)
    suite = tmp_path / "one.toml"
    suite.write_text('description = "one short scenario"\n[[scenario]]\nname = "a"\n'
                     'spec = "default.toml"\n')  # fmt: skip
    out = tmp_path / "out"
    kw: dict[str, Any] = {"executor": "local", "progress": False, "tensorboard": False}
    benchmark(["queue-threshold"], str(suite), [0, 1], out, **kw)
    whole = (out / "scores.csv").read_text()
    results = out / "episodes" / "results.csv"
    rows = list(csv.DictReader(results.open()))
    # lose the planner's seed 1 and queue-threshold's seed 0, as an interrupt would
    kept = [
        r
        for r in rows
        if not (r["agent"].startswith("planner") and r["seed"] == "1")
        and not (r["agent"] == "queue-threshold" and r["seed"] == "0")
    ]
    assert len(kept) == len(rows) - 2
    with results.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    from agents.run.tasks import episode_task

    played: list[tuple[str, int]] = []

    def spy(agent: str, scenario: str, seed: int, *args: Any) -> Any:
        played.append((agent.split(":")[0].split("[")[0], seed))
        return episode_task(agent, scenario, seed, *args)

    monkeypatch.setattr("agents.run.evaluate.episode_task", spy)
    benchmark(["queue-threshold"], str(suite), [0, 1], out, resume=True, **kw)
    assert sorted(played) == [("planner", 1), ("queue-threshold", 0)]
    assert len(list(csv.DictReader(results.open()))) == len(rows)
    # the kept episodes come back from results.csv, whose floats have 9 decimals: the scores
    # agree to that precision (an uninterrupted run's are computed from the unrounded rows)
    again = list(csv.DictReader((out / "scores.csv").open()))
    before = list(csv.DictReader(io.StringIO(whole)))
    assert [(r["agent"], r["scenario"]) for r in again] == [
        (r["agent"], r["scenario"]) for r in before
    ]
    for a, b in zip(again, before, strict=True):
        for k, v in b.items():
            try:
                assert float(a[k]) == pytest.approx(float(v), rel=1e-7, abs=1e-7, nan_ok=True), k
            except ValueError:
                assert a[k] == v, k


def test_a_resumed_phase_keeps_the_other_phases_rows_from_its_first_write(
    tmp_path: Path,
) -> None:
    """``evaluate(..., keep_others=True)`` on resume keeps rows of episodes outside its grid in
    results.csv from its first write (a run killed mid-phase loses none), once each however
    often it resumes, and out of its summary; without it they are dropped (``chiron evaluate``)."""
    from agents.run.evaluate import evaluate

    spec = str(_short(tmp_path, "default", 60.0))
    out = tmp_path / "ep"
    kw: dict[str, Any] = {"plots": False, "tensorboard": False, "progress": False}
    evaluate(["static"], [spec], [0], out, executor="local", **kw)
    results = out / "results.csv"
    (row,) = list(csv.DictReader(results.open()))
    other = {**row, "agent": "planner[bases=static]"}
    with results.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(row)).writerow(other)

    seen: list[list[str]] = []

    def mid_phase(_: object) -> None:  # the file as a kill at this moment would leave it
        seen.append([r["agent"] for r in csv.DictReader(results.open())])

    summary = evaluate(["static"], [spec], [0, 1], out, executor="local", resume=True,
                       keep_others=True, on_episode=mid_phase, **kw)  # fmt: skip
    # seed 1 ran (its row is appended as it ends); the other phase's row was in before it
    assert seen == [["planner[bases=static]", "static", "static"]]
    for _ in range(2):  # once each, however often it resumes; not in the summary
        summary = evaluate(["static"], [spec], [0, 1], out, executor="local", resume=True,
                           keep_others=True, **kw)  # fmt: skip
        kept = [r["agent"] for r in csv.DictReader(results.open())]
        assert kept == ["planner[bases=static]", "static", "static"]
        assert {s["agent"] for s in summary} == {"static"}
    evaluate(["static"], [spec], [0], out, executor="local", resume=True, **kw)
    assert [r["agent"] for r in csv.DictReader(results.open())] == ["static"]
