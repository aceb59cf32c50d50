"""The best fixed allocation in hindsight (agents/run/fixed.py, issue 38)."""

from __future__ import annotations

from typing import Any

from agents.run.fixed import cheapest, pareto, with_counts
from chiron_gym.scenario import load
from chiron_gym.sim.request import POOL_NAMES


def test_with_counts_starts_and_bounds_the_pools_at_the_counts() -> None:
    base = load("default")
    sc = with_counts(base, {"interactive": 7, "batch": 0})
    got = {POOL_NAMES[int(p.pool)]: p for p in sc.cluster.pools}
    assert got["interactive"].initial_instances == 7
    assert got["interactive"].min_instances <= 7 <= got["interactive"].max_instances
    assert got["batch"].initial_instances == 0
    # a pool the counts do not name keeps the scenario's start
    was = {POOL_NAMES[int(p.pool)]: p for p in base.cluster.pools}
    assert got["mixed"].initial_instances == was["mixed"].initial_instances


def row(i: int, b: int, att: float, batt: float, gh: float) -> dict[str, Any]:
    return {
        "counts": {"interactive": i, "batch": b},
        "interactive_attainment": att,
        "batch_attainment": batt,
        "gpu_hours": gh,
        "reward": 0.0,
    }


def test_cheapest_needs_both_attainments_and_the_front_drops_dominated_points() -> None:
    rows = [
        row(4, 0, 0.99, 0.0, 4.0),  # cheap, but the batch job is lost
        row(4, 1, 0.99, 1.0, 5.0),
        row(5, 1, 0.999, 1.0, 6.0),
        row(6, 1, 0.98, 1.0, 7.0),  # dearer and worse: dominated
    ]
    assert cheapest(rows, 0.95)["counts"] == {"interactive": 4, "batch": 1}  # type: ignore[index]
    assert cheapest(rows, 0.995)["counts"] == {"interactive": 5, "batch": 1}  # type: ignore[index]
    assert cheapest(rows, 0.9999) is None
    assert [r["gpu_hours"] for r in pareto(rows)] == [4.0, 6.0]
