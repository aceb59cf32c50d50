"""QLM's waiting-time estimate of a queue of request groups against their deadlines.

The waiting time of a group is the decode work ahead of it (its own requests included) over the
throughput that serves it. Output lengths are unknown in advance; by the central limit theorem
the sum over ``N`` requests is about normal with mean ``N * mu`` and standard deviation
``sigma * sqrt(N)``, so a conservative estimate is ``N * mu + z * sigma * sqrt(N)``
(``../shared/docs/chiron.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_DEFAULT = 1.645  # one-sided 95%: our choice; the sources do not give z


@dataclass(frozen=True, slots=True)
class GroupEstimate:
    """One group's estimate: when its last request would finish, against its deadline."""

    deadline_s: float
    requests_ahead: int  # including the group's own
    wait_s: float
    slack_s: float  # deadline - now - start-up delay
    work_tokens: float = 0.0  # conservative output tokens ahead, the group's own included

    @property
    def pressure(self) -> float:
        """Batch backpressure: wait / slack (above 1: add capacity)."""
        if self.slack_s <= 0:
            return math.inf if self.wait_s > 0 else 0.0
        return self.wait_s / self.slack_s


def estimate(
    groups: list[tuple[float, int]],
    *,
    now_s: float,
    tokens_per_s: float,
    mean_output: float,
    std_output: float,
    startup_s: float = 0.0,
    z: float = Z_DEFAULT,
) -> list[GroupEstimate]:
    """Estimates for groups served earliest deadline first, each behind the ones before it."""
    out: list[GroupEstimate] = []
    ahead = 0
    for deadline, count in groups:
        ahead += count
        work = ahead * mean_output + z * std_output * math.sqrt(ahead)
        wait = work / tokens_per_s if tokens_per_s > 0 else math.inf
        out.append(GroupEstimate(deadline, ahead, wait, deadline - now_s - startup_s, work))
    return out


def max_pressure(estimates: list[GroupEstimate]) -> float:
    """The most urgent group's backpressure (0 with an empty queue)."""
    return max((e.pressure for e in estimates), default=0.0)


def required_rate(estimates: list[GroupEstimate]) -> float:
    """Tokens/s that would bring every group's backpressure to at most 1: the largest
    ``work / slack`` (a group with under a second of slack left counts one second)."""
    return max((e.work_tokens / max(e.slack_s, 1.0) for e in estimates), default=0.0)


def at_risk(estimates: list[GroupEstimate], groups: list[tuple[float, int]], now_s: float) -> int:
    """Queued requests in groups whose estimated finish falls after their deadline (those
    already past it included)."""
    n = 0
    for e, (_, count) in zip(estimates, groups, strict=True):
        if now_s + e.wait_s > e.deadline_s:
            n += count
    return n


def predicted_late(
    estimates: list[GroupEstimate], groups: list[tuple[float, int]], now_s: float
) -> int:
    """Queued requests not yet past their deadline whose estimated finish falls after it."""
    n = 0
    for e, (_, count) in zip(estimates, groups, strict=True):
        if e.deadline_s >= now_s and now_s + e.wait_s > e.deadline_s:
            n += count
    return n
