"""Interval statistics as rliable defines them, checked against scipy and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agents.run.intervals import (
    _resample,
    improvement_interval,
    iqm,
    performance_profile,
    probability_of_improvement,
    stratified_interval,
)


def test_iqm_is_the_mean_of_the_middle_half_pooled_over_tasks() -> None:
    m = np.array([[1.0, 8.0], [2.0, 7.0], [3.0, 6.0], [4.0, 5.0]])  # pooled: 1..8
    assert iqm(m) == pytest.approx(4.5)  # (3 + 4 + 5 + 6) / 4
    rng = np.random.default_rng(1)
    big = rng.normal(size=(20, 6))
    assert iqm(big) == pytest.approx(stats.trim_mean(big, 0.25, axis=None))
    odd = rng.normal(size=(7, 3))  # 21 values: int(5.25) = 5 cut at each end
    assert iqm(odd) == pytest.approx(stats.trim_mean(odd, 0.25, axis=None))


def test_probability_of_improvement_is_mann_whitney_u_over_pairs_averaged_over_tasks() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 5, size=(7, 3)).astype(float)  # integers: ties happen
    y = rng.integers(0, 5, size=(9, 3)).astype(float)
    want = np.mean(
        [
            stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / (7 * 9)
            for t in range(3)
        ]
    )
    assert probability_of_improvement(x, y) == pytest.approx(want, abs=1e-12)
    assert probability_of_improvement(x, x) == 0.5
    assert probability_of_improvement(x + 10, x) == 1.0


def test_the_bootstrap_resamples_runs_within_each_task() -> None:
    m = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    r = _resample(m, np.random.default_rng(0))
    assert set(r[:, 0]) <= {0.0, 1.0, 2.0} and set(r[:, 1]) <= {10.0, 11.0, 12.0}


def test_intervals_hold_their_point_estimate_and_shrink_with_more_runs() -> None:
    rng = np.random.default_rng(3)
    few, many = rng.normal(size=(5, 4)), rng.normal(size=(80, 4))
    for m in (few, many):
        est, lo, hi = stratified_interval(m)
        assert lo <= est <= hi
    assert np.ptp(stratified_interval(many)[1:]) < np.ptp(stratified_interval(few)[1:])
    same = np.full((6, 3), 2.0)
    assert stratified_interval(same) == (2.0, 2.0, 2.0)
    # X clearly above Y: the whole interval above one half; equal: around one half
    p, lo, hi = improvement_interval(many + 3.0, many)
    assert lo > 0.5 and p > 0.95
    p, lo, hi = improvement_interval(many, many)
    assert p == 0.5 and lo < 0.5 < hi


def test_performance_profile_falls_from_one_to_zero() -> None:
    m = np.arange(12, dtype=float).reshape(4, 3)
    prof = performance_profile(m, [-1.0, 5.5, 20.0], reps=200)
    assert [round(p[1], 6) for p in prof] == [1.0, 0.5, 0.0]
    assert all(p[2] <= p[1] <= p[3] for p in prof)


def test_bad_scores_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="runs x tasks"):
        iqm(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        iqm(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(np.zeros((2, 2)), np.zeros((2, 3)))


def _row(agent: str, scenario: str, seed: int, reward: float, att: float, gh: float) -> dict:  # type: ignore[type-arg]
    return {
        "agent": agent,
        "scenario": scenario,
        "seed": seed,
        "reward": reward,
        "reward_violation": -10.0,
        "interactive_attainment": att,
        "gpu_hours": gh,
    }


def _references(seed: int, chiron: float) -> list[dict]:  # type: ignore[type-arg]
    """Scenario ``s``'s floor (static 0, random -50), ceiling (planner 100) and Chiron."""
    return [
        _row("static", "s", seed, 0.0, 0.80, 10.0),
        _row("random", "s", seed, -50.0, 0.70, 9.0),
        _row("planner", "s", seed, 100.0, 0.99, 8.0),
        _row("chiron", "s", seed, chiron, 0.90, 12.0),
    ]


def test_evidence_normalises_between_floor_and_ceiling_and_compares_with_chiron() -> None:
    from agents.run.evidence import evidence

    rows = []
    for seed in range(4):
        rows += [
            *_references(seed, chiron=50.0 + seed),
            _row("cheap", "s", seed, 80.0 + seed, 0.95, 11.0)
            | {"_params": {"departure_rate": 0.25}},
        ]
    ev = evidence(rows, {})
    norm = ev["normaliser"]["s"]
    assert (norm["floor"], norm["ceiling"], norm["defined"]) == (0.0, 100.0, True)
    cells = {c["agent"]: c for c in ev["cells"]}
    assert cells["planner"]["ceiling_score"] == 1.0 and cells["static"]["ceiling_score"] == 0.0
    assert cells["chiron"]["ceiling_score"] == pytest.approx(0.515)
    cheap = cells["cheap"]
    assert cheap["reward_vs_chiron"] == pytest.approx(30.0)
    assert cheap["reward_vs_chiron_low"] == pytest.approx(30.0) and cheap["verdict"] == "better"
    assert cheap["dominance"] == "dominates" and cheap["matched_gpu_hours"] == 11.0
    assert (
        cells["static"]["dominance"] == "neither" and cells["static"]["matched_gpu_hours"] is None
    )
    assert cells["random"]["dominance"] == "neither" and cells["random"]["verdict"] == "worse"
    a = ev["agents"]["cheap"]
    assert a["departure_rate"] == 0.25 and a["scenarios_better"] == 1
    assert a["p_improve"] == 1.0 and a["iqm"] == pytest.approx(0.815)
    assert a["gap_closed"] == pytest.approx((0.815 - 0.515) / (1 - 0.515))
    # the price of a violation: every agent pays the same term here, so ranks do not move
    assert cheap["price_ranks"] == [2, 2, 2, 2, 2]


def test_training_runs_are_pooled_and_paired_with_chiron_by_traffic_seed() -> None:
    """Three training runs of one pipeline, four seeds each: one agent of 12 samples whose paired
    differences pair each run's episode with Chiron's of the same seed, and whose interval
    widens with the spread between runs (a run that lost)."""
    from agents.run.evidence import evidence

    rows = []
    for seed in range(4):
        rows += _references(seed, chiron=50.0 + 10 * seed)
        for run, margin in enumerate((5.0, 6.0, -20.0)):  # the third run lost
            rows.append(
                _row(f"ppo:run{run}", "s", seed, 50.0 + 10 * seed + margin, 0.90, 12.0)
                | {"_params": {"departure_rate": 0.1 * run}}
            )
    ev = evidence(rows, {}, {"pipeline": ["ppo:run0", "ppo:run1", "ppo:run2"]})
    a = ev["agents"]["pipeline"]
    assert (a["training_runs"], a["seeds"], a["samples"]) == (3, 4, 12)
    assert "ppo:run0" not in ev["agents"]
    assert a["departure_rate"] == pytest.approx(0.1)
    cell = next(c for c in ev["cells"] if c["agent"] == "pipeline")
    # pairs by seed: each difference is its run's margin exactly (Chiron varies with the seed)
    assert cell["paired_seeds"] == 12
    assert cell["reward_vs_chiron"] == pytest.approx((5.0 + 6.0 - 20.0) / 3)
    assert cell["reward_vs_chiron_low"] < 0 < cell["reward_vs_chiron_high"]
    assert cell["verdict"] == "tie"  # two runs above Chiron do not make a win
    only_good = evidence(rows, {}, {"pipeline": ["ppo:run0", "ppo:run1"]})
    good = next(c for c in only_good["cells"] if c["agent"] == "pipeline")
    assert good["verdict"] == "better" and good["reward_vs_chiron_low"] >= 5.0 - 1e-9


def test_a_beaten_ceiling_is_said() -> None:
    from agents.run.evidence import evidence, evidence_markdown

    rows = []
    for seed in range(3):
        rows += [
            _row("static", "s", seed, 0.0, 0.80, 10.0),
            _row("planner", "s", seed, 100.0, 0.99, 8.0),
            _row("chiron", "s", seed, 50.0, 0.90, 12.0),
            _row("outsider", "s", seed, 120.0, 0.99, 8.0),  # not among the planner's bases
        ]
    ev = evidence(rows, {})
    assert ev["normaliser"]["s"]["beaten_by"] == ["outsider"]
    assert "the ceiling is beaten on s** by outsider" in evidence_markdown(ev)
    fair = evidence([r for r in rows if r["agent"] != "outsider"], {})
    assert fair["normaliser"]["s"]["beaten_by"] == []
