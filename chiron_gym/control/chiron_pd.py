"""Chiron's global loop on prefill and decode pools: our reconstruction, not the paper's.

Chiron (arXiv 2501.08090) serves aggregated instances only; it says nothing of disaggregated
serving. We apply its interactive rule (``ChironGlobal``: work held over the capacity the local
caps advertise, or the window's p95 latency over its SLO when that is higher; add above the upper
bound, remove half the spare after a quiet hold of two cold starts; a headroom share) to each of
the two roles, each on the signal of the phase it serves (ours):

- **prefill**: requests running or waiting on prefill instances, plus the global queues they pull
  from, over the caps advertised; latency backpressure is the TTFT p95 over its SLO (TTFT counts
  the prefill, the transfer and the first decode);
- **decode**: requests running, waiting or being read in on decode instances, plus the prefilled
  requests waiting for room, over the caps advertised; latency backpressure is the ITL p95 over
  its SLO.

The parameters are ``GlobalParams``' (the same defaults); the headroom lives in each role's own
pool. The GPU budget is shared in the order prefill, decode (a request that is not prefilled
reaches no decode instance), after what the aggregated pools took.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from chiron_gym.control.chiron import ClusterFacts, GlobalParams
from chiron_gym.sim.request import POOL_NAMES

ROLES = ("prefill", "decode")


@dataclass
class _Role:
    above: int = 0
    # (seconds covered, utilisation, work held) per decision since the last change
    history: deque[tuple[float, float, float]] = field(default_factory=deque)


class ChironRoles:
    """Instance changes of the prefill and decode pools (``Autoscale-v1``)."""

    def __init__(self, params: GlobalParams | None, facts: ClusterFacts) -> None:
        self.p = params or GlobalParams()
        self.facts = facts
        self.s = {r: _Role() for r in ROLES}

    def reset(self) -> None:
        self.s = {r: _Role() for r in ROLES}

    def signals(self, raw: dict[str, float]) -> dict[str, tuple[float, float]]:
        """Per role: (requests held, latency backpressure)."""
        queued = raw["interactive.queue"]
        if raw["batch.exists"] < 0.5 and raw["mixed.exists"] < 0.5:
            queued += raw["batch.queue"]  # only the prefill pool pulls batch work
        waiting_room = max(0.0, raw["prefill.transfers"] - raw["decode.transfers"])
        return {
            "prefill": (
                queued + raw["prefill.running"] + raw["prefill.waiting"],
                raw["interactive.ttft_p95_over_slo"],
            ),
            "decode": (
                raw["decode.running"]
                + raw["decode.waiting"]
                + raw["decode.transfers"]
                + waiting_room,
                raw["interactive.itl_p95_over_slo"],
            ),
        }

    def after(self, aggregated: list[int], raw: dict[str, float]) -> list[int]:
        """The five pools' changes: the aggregated pools' (``ChironGlobal.deltas``), then the
        prefill and decode pools', within the GPUs the aggregated additions leave."""
        pools = self.facts.pools
        taken = sum(
            max(0, d) * pools[n].gpus_per_instance
            for n, d in zip(POOL_NAMES, aggregated, strict=True)
        )
        roles = self.deltas(raw, taken)
        return [*aggregated, roles["prefill"], roles["decode"]]

    def deltas(self, raw: dict[str, float], gpus_taken: int = 0) -> dict[str, int]:
        """Instance change per role; ``gpus_taken``: GPUs the aggregated pools' changes add."""
        out: dict[str, int] = {}
        for role, (held, lat) in self.signals(raw).items():
            bounds = self.facts.pools[role]
            if not bounds.exists:
                out[role] = 0
                continue
            live = round(raw[f"{role}.ready"] + raw[f"{role}.starting"])
            d = self._role(role, held, lat, live, raw)
            d = max(-self.p.max_step, min(self.p.max_step, bounds.clamp(live, d)))
            out[role] = d
        return self._fit(out, raw, gpus_taken)

    def _role(self, role: str, held: float, lat: float, live: int, raw: dict[str, float]) -> int:
        p, st = self.p, self.s[role]
        dt = self.facts.decision_interval_s
        per = max(1.0, raw[f"{role}.batch_cap"])
        capacity = per * live
        util = held / capacity if capacity > 0 else (math.inf if held > 0 else 0.0)
        lat *= p.latency_weight
        util = max(util, lat)
        st.above = st.above + 1 if util > p.upper_utilisation else 0
        st.history.append((dt, util, held))
        cold = self.facts.cold_start_s
        hold = max(p.min_down_hold_s, p.down_hold_cold_starts * cold)
        while sum(h[0] for h in st.history) - st.history[0][0] >= hold:
            st.history.popleft()
        needed = math.ceil(held / (p.upper_utilisation * per)) if held > 0 else 0
        if lat > p.upper_utilisation and raw[f"{role}.starting"] < 0.5:
            needed = max(needed, math.ceil(live * min(lat, p.latency_max) / p.upper_utilisation))
        headroom = max(p.headroom_instances, math.ceil(p.headroom_share * needed))
        if st.above >= p.up_windows:
            st.above = 0
            st.history.clear()
            return max(1, needed + headroom - live)
        hist = st.history
        quiet = (
            sum(h[0] for h in hist) >= hold
            and sum(h[1] for h in hist) / len(hist) < p.lower_utilisation
            and max(h[1] for h in hist) <= p.upper_utilisation
        )
        if quiet:
            need_peak = math.ceil(max(h[2] for h in hist) / (p.upper_utilisation * per))
            keep = need_peak + max(p.headroom_instances, math.ceil(p.headroom_share * need_peak))
            hist.clear()
            spare = live - keep
            if spare >= 1:
                return -max(1, math.floor(spare / 2))
        return 0

    def _fit(self, out: dict[str, int], raw: dict[str, float], gpus_taken: int) -> dict[str, int]:
        """Additions within the GPU budget, prefill first."""
        budget = self.facts.max_gpus
        if budget is None:
            return out
        room = budget - round(raw["gpus_over_budget"] * budget) - gpus_taken
        for role in ROLES:
            if out[role] > 0:
                gpus = self.facts.pools[role].gpus_per_instance
                out[role] = min(out[role], max(0, room) // gpus)
                room -= out[role] * gpus
        return out


__all__ = ["ROLES", "ChironRoles"]
