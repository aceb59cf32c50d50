"""The comparisons of docs/results.md (issue 38): paired intervals, the front, price rankings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.run.results_tables import front, means, paired_table, pareto_figure, price_table
from agents.run.stats import paired_interval, verdict


def rows() -> list[dict[str, Any]]:
    """Three agents, 5 seeds: `a` always 0.02 better and 1 GPU-h dearer than `b`; `c` dominated."""
    out = []
    for seed in range(5):
        base = 0.9 + 0.01 * seed  # the seeds differ far more than the agents
        for agent, att, gh, viol in (
            ("a", base + 0.02, 11.0, -100.0),
            ("b", base, 10.0, -300.0),
            ("c", base - 0.05, 12.0, -900.0),
        ):
            out.append(
                {
                    "agent": agent,
                    "scenario": "s",
                    "seed": seed,
                    "interactive_attainment": att,
                    "batch_attainment": 1.0,
                    "gpu_hours": gh + 0.1 * seed,
                    "reward": -1000.0 * gh + viol,
                    "reward_violation": viol,
                }
            )
    return out


def test_paired_interval_sees_a_small_difference_that_unpaired_spreads_would_hide() -> None:
    a = [0.92, 0.93, 0.94, 0.95, 0.96]
    b = [x - 0.02 for x in a]
    m, lo, hi = paired_interval(a, b)
    assert m == pytest.approx(0.02) and lo == pytest.approx(0.02) and hi == pytest.approx(0.02)
    assert verdict(m, lo, hi) == "better" and verdict(-m, -hi, -lo) == "worse"
    m, lo, hi = paired_interval([1.0, -1.0, 1.0, -1.0], [0.0, 0.0, 0.0, 0.0])
    assert lo < 0 < hi and verdict(m, lo, hi) == "tie"
    with pytest.raises(ValueError, match="same, non-zero length"):
        paired_interval([1.0], [1.0, 2.0])


def test_tables_and_front(tmp_path: Path) -> None:
    r = rows()
    table = paired_table(r, "s", "a", ["b", "c"])
    line_b = next(line for line in table.splitlines() if line.startswith("| b "))
    assert "+0.020 [+0.020, +0.020] better" in line_b  # attainment, paired
    assert "+1.00 [+1.00, +1.00] worse" in line_b  # GPU-hours: more is worse
    assert front(means(r, "s")) == ["b", "a"]  # c is beaten on both axes
    assert pareto_figure(r, "s", tmp_path / "p.png") == ["b", "a"]
    assert (tmp_path / "p.png").stat().st_size > 1000
    ranks = {
        line.split("|")[1].strip(): [int(x) for x in line.split("|")[2:-1]]
        for line in price_table(r, "s", (1.0, 20.0)).splitlines()[2:]
    }
    # a costs 1,000 more and saves 200 of violations: b ranks first at the base price, a once a
    # violation costs 20x more
    assert ranks["b"] == [1, 2] and ranks["a"] == [2, 1] and ranks["c"] == [3, 3]
