"""Chiron's two control loops, on the environment's named raw features.

``ChironLocal`` picks each pool's batch-cap change from local backpressure; ``ChironGlobal`` picks
each pool's instance change from interactive utilisation (with hysteresis) and the batch queue's
waiting-time estimate against its deadlines. The environment runs one of them itself when
``action_mode`` leaves that level to Chiron; ``agents/chiron.py`` composes both as an agent.

Every parameter is named, with its default and where it comes from: (paper) the Chiron paper's
structure, (QLM) the QLM code, (ours) our reconstruction (``../shared/docs/chiron.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from chiron_gym.control.caps import DOUBLE, HALVE, INCREASE, KEEP

POOL_NAMES = ("interactive", "mixed", "batch")


@dataclass
class LocalParams:
    """Local loop (per pool, every decision interval)."""

    ewma_alpha: float = 0.5  # (ours) weight of the newest backpressure sample
    throughput_gain: float = 0.05  # (ours) an increase must raise tokens/s by this much
    low_utilisation: float = 0.5  # (ours) below this share of the cap in use, hold the cap


@dataclass
class LocalState:
    bp: dict[str, float] = field(default_factory=dict)
    last_choice: dict[str, int] = field(default_factory=dict)
    last_tokens: dict[str, float] = field(default_factory=dict)


class ChironLocal:
    """Batch caps from latency and throughput backpressure (AIMD: halve above 1, else grow)."""

    def __init__(self, params: LocalParams | None = None) -> None:
        self.p = params or LocalParams()
        self.s = LocalState()

    def reset(self) -> None:
        self.s = LocalState()

    def choices(self, raw: dict[str, float]) -> list[int]:
        """One cap choice per pool (``HALVE``/``KEEP``/``INCREASE``/``DOUBLE``)."""
        out: list[int] = []
        for pool in POOL_NAMES:
            if raw[f"{pool}.exists"] < 0.5 or raw[f"{pool}.ready"] < 1:
                out.append(KEEP)
                continue
            # Latency backpressure: ITL against the tightest SLO the pool may hold (paper).
            cls = "batch" if pool == "batch" else "interactive"
            lat = raw[f"{cls}.itl_p95_over_slo"]
            tokens = raw[f"{pool}.tokens_per_s"]
            tp = 0.0
            if self.s.last_choice.get(pool) in (INCREASE, DOUBLE):
                before = self.s.last_tokens.get(pool, 0.0)
                tp = 1.5 if tokens < before * (1 + self.p.throughput_gain) else 0.0  # (ours)
            a = self.p.ewma_alpha
            bp = a * max(lat, tp) + (1 - a) * self.s.bp.get(pool, 0.0)
            self.s.bp[pool] = bp
            in_use = raw[f"{pool}.running"] / max(
                1.0, raw[f"{pool}.batch_cap"] * raw[f"{pool}.ready"]
            )
            if bp > 1.0:
                choice = HALVE
            elif in_use < self.p.low_utilisation:
                choice = KEEP  # the cap is not what limits the pool
            else:
                choice = INCREASE
            self.s.last_choice[pool] = choice
            self.s.last_tokens[pool] = tokens
            out.append(choice)
        return out


@dataclass
class GlobalParams:
    """Global loop (cluster, every decision interval)."""

    upper_utilisation: float = 0.8  # (paper: bounds with hysteresis; values ours)
    lower_utilisation: float = 0.4  # (ours)
    up_windows: int = 1  # (ours) windows above the upper bound before adding
    down_windows: int = 6  # (ours) windows below the lower bound before removing
    headroom_instances: int = 1  # (paper: keep headroom; value ours)
    batch_add_above: float = 1.0  # (reconstruction in chiron.md) wait / slack above 1: add
    batch_remove_below: float = 0.3  # (ours) ample slack: remove one batch instance
    max_step: int = 2  # instances per pool per decision (the env's k)


@dataclass
class GlobalState:
    above: int = 0
    below: int = 0
    batch_slack: int = 0


class ChironGlobal:
    """Instance counts from interactive utilisation and batch waiting-time backpressure."""

    def __init__(self, params: GlobalParams | None = None) -> None:
        self.p = params or GlobalParams()
        self.s = GlobalState()

    def reset(self) -> None:
        self.s = GlobalState()

    def deltas(self, raw: dict[str, float]) -> list[int]:
        """Instance change per pool (interactive, mixed, batch)."""
        p = self.p
        out = {name: 0 for name in POOL_NAMES}
        # Interactive: requests held over the capacity the local caps advertise.
        held = raw["interactive.queue"]
        cap = 0.0
        for pool in ("interactive", "mixed"):
            if raw[f"{pool}.exists"] > 0.5:
                held += raw[f"{pool}.running"] + raw[f"{pool}.waiting"]
                cap += raw[f"{pool}.batch_cap"] * (raw[f"{pool}.ready"] + raw[f"{pool}.starting"])
        util = held / cap if cap > 0 else (math.inf if held > 0 else 0.0)
        self.s.above = self.s.above + 1 if util > p.upper_utilisation else 0
        self.s.below = self.s.below + 1 if util < p.lower_utilisation else 0
        target = "interactive" if raw["interactive.exists"] > 0.5 else "mixed"
        if raw[f"{target}.exists"] > 0.5:
            if self.s.above >= p.up_windows:
                need = math.ceil(held / max(p.upper_utilisation, 1e-9) - cap)
                per = max(1.0, raw[f"{target}.batch_cap"])
                out[target] += min(p.max_step, max(1, math.ceil(need / per)))
                self.s.above = 0
            elif self.s.below >= p.down_windows:
                live = raw[f"{target}.ready"] + raw[f"{target}.starting"]
                per = max(1.0, raw[f"{target}.batch_cap"])
                # Remove one only if the rest, less the headroom, stays under the upper bound.
                if held <= p.upper_utilisation * (cap - per * (1 + p.headroom_instances)):
                    out[target] -= 1
                self.s.below = 0
        # Batch: QLM waiting-time estimate against the nearest deadline.
        pressure = raw["batch.wait_over_slack"]
        btarget = "batch" if raw["batch.exists"] > 0.5 else "mixed"
        if raw[f"{btarget}.exists"] > 0.5:
            live = raw[f"{btarget}.ready"] + raw[f"{btarget}.starting"]
            if pressure > p.batch_add_above and raw["batch.queue"] > 0:
                extra = math.ceil(max(1.0, live) * (min(pressure, 10.0) - 1.0))
                out[btarget] += min(p.max_step, max(1, extra))
                self.s.batch_slack = 0
            elif pressure < p.batch_remove_below:
                self.s.batch_slack += 1
                if self.s.batch_slack >= p.down_windows and live > 0:
                    out[btarget] -= 1
                    self.s.batch_slack = 0
            else:
                self.s.batch_slack = 0
        return [max(-p.max_step, min(p.max_step, out[n])) for n in POOL_NAMES]
