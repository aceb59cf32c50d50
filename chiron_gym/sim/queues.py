"""The cluster's global queue of one class: request groups served earliest deadline first.

As in QLM, a request group gathers requests of one class whose deadlines fall in the same window
of ``granularity_s`` seconds; groups are served earliest-deadline-first and requests within a
group first-come-first-served. The queue holds request indices (into the ``Workload``), not
objects, so a backlog of hundreds of thousands of requests stays small.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable

from mypy_extensions import mypyc_attr

_NO_DEADLINE = 2**62  # the group of requests without a deadline, served last


def group_key(deadline_s: float, granularity_s: float) -> int:
    """The group of a deadline: the index of its window of ``granularity_s`` seconds."""
    if math.isinf(deadline_s):
        return _NO_DEADLINE
    return math.floor(deadline_s / granularity_s)


def group_start_s(key: int, granularity_s: float) -> float:
    """When the deadline window of group ``key`` starts (inf for requests without a deadline)."""
    return key * granularity_s if key < _NO_DEADLINE else math.inf


def deadline_groups(deadlines_s: Iterable[float], granularity_s: float) -> list[tuple[float, int]]:
    """``(deadline window start_s, requests)`` per group of these deadlines, earliest first."""
    counts: dict[int, int] = {}
    for d in deadlines_s:
        k = group_key(d, granularity_s)
        counts[k] = counts.get(k, 0) + 1
    return [(group_start_s(k, granularity_s), n) for k, n in sorted(counts.items())]


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class GroupQueue:
    """Request indices grouped by deadline window; ``pop`` returns the EDF/FCFS head."""

    __slots__ = ("_groups", "_keys", "_len", "granularity_s")

    def __init__(self, granularity_s: float) -> None:
        if not granularity_s > 0:
            raise ValueError(f"granularity_s must be > 0, got {granularity_s!r}")
        self.granularity_s = granularity_s
        self._groups: dict[int, deque[int]] = {}
        self._keys: list[int] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def key(self, deadline_s: float) -> int:
        """The group of a deadline (its window index)."""
        return group_key(deadline_s, self.granularity_s)

    def push(self, idx: int, deadline_s: float) -> None:
        """Append a request to the back of its group."""
        k = self.key(deadline_s)
        group = self._groups.get(k)
        if group is None:
            group = self._groups[k] = deque()
            heapq.heappush(self._keys, k)
        group.append(idx)
        self._len += 1

    def pop(self) -> int:
        """Remove and return the head request index."""
        k = self._keys[0]
        group = self._groups[k]
        idx = group.popleft()
        if not group:
            heapq.heappop(self._keys)
            del self._groups[k]
        self._len -= 1
        return idx

    def head(self) -> int:
        """The request index ``pop`` would return."""
        return self._groups[self._keys[0]][0]

    def groups(self) -> list[tuple[float, int]]:
        """``(deadline window start_s, requests)`` per group, earliest deadline first."""
        g = self.granularity_s
        return [(group_start_s(k, g), len(self._groups[k])) for k in sorted(self._keys)]
