"""The event queue orders by time, then priority, then insertion."""

from __future__ import annotations

import pytest

from chiron_gym.sim.events import EventQueue


def test_orders_by_time_priority_then_insertion() -> None:
    """Equal times fall back to priority, equal priorities to insertion order."""
    q = EventQueue()
    q.push(2.0, 0, 0, "late")
    q.push(1.0, 1, 0, "b-prio1")
    q.push(1.0, 0, 0, "a-prio0-first")
    q.push(1.0, 0, 0, "a-prio0-second")
    out = [q.pop()[2] for _ in range(4)]
    assert out == ["a-prio0-first", "a-prio0-second", "b-prio1", "late"]
    assert q.now == 2.0


def test_rejects_events_in_the_past() -> None:
    """An event before the clock is an error, not a silent reorder."""
    q = EventQueue()
    q.push(5.0, 0, 0, None)
    q.pop()
    with pytest.raises(ValueError, match="before the clock"):
        q.push(4.0, 0, 0, None)


def test_counters_are_per_queue() -> None:
    """Two queues do not share a tie-break counter (two envs in one process stay independent)."""
    a, b = EventQueue(), EventQueue()
    for _ in range(3):
        a.push(0.0, 0, 0, None)
    b.push(0.0, 0, 0, "x")
    assert b._heap[0][2] == 0
