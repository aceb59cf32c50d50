"""A deterministic event queue: a binary heap ordered by (time, priority, sequence number).

As in SimPy's ``Environment``, the tie-breaking counter belongs to the queue, never to a class, so
two clusters in one process (as in SB3's ``DummyVecEnv``) cannot influence each other.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from mypy_extensions import mypyc_attr

# Priorities for events at the same instant: an instance finishes its iteration before an
# instance becomes ready, before a request arrives. Both simulation modes (fast-forward and
# per-iteration) use the same order, which keeps them equal.
PRIORITY_ITERATION = 0
PRIORITY_READY = 1
PRIORITY_ARRIVAL = 2


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class EventQueue:
    """Pending events as ``(time_s, priority, seq, kind, payload)``; the clock is ``now``."""

    __slots__ = ("_counter", "_heap", "now")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._counter = itertools.count()
        self.now = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, time_s: float, priority: int, kind: int, payload: Any) -> None:
        """Schedule an event; it may not lie in the past."""
        if time_s < self.now:
            raise ValueError(f"event at {time_s} s is before the clock ({self.now} s)")
        heapq.heappush(self._heap, (time_s, priority, next(self._counter), kind, payload))

    def peek(self) -> tuple[float, int]:
        """Time and priority of the next event, ``(inf, 0)`` when empty."""
        if not self._heap:
            return (float("inf"), 0)
        head = self._heap[0]
        return (head[0], head[1])

    def pop(self) -> tuple[float, int, Any]:
        """Remove the next event, advance the clock to it, return ``(time_s, kind, payload)``."""
        time_s, _priority, _seq, kind, payload = heapq.heappop(self._heap)
        self.now = time_s
        return time_s, kind, payload
