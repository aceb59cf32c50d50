"""Chiron's two control loops (Patke et al., arXiv 2501.08090), as far as the sources give them.

``ChironLocal`` is the fast loop that lives on each instance: every ``period_s`` it sets the
instance's batch cap from local backpressure (latency: observed ITL over the SLO; throughput: the
token rate before the last cap increase over the rate after it, measured only while the cap
binds and only when the increase raised the running batch), growing it below 1 and shrinking it
above, with a hold band. ``ChironGlobal`` is the slow loop over the cluster: instance counts from
interactive utilisation (interactive work over the capacity the local caps advertise, or the
window's p95 latency over its SLO when that is higher, with hysteresis and headroom kept in the
mixed pool) and from the batch queue's waiting-time estimate against its deadlines (capacity from
the profile, not the last window's throughput), interactive first when the GPU budget binds.

The environment runs the local loop per instance when ``action_mode="global"`` and the global
loop when ``action_mode="local"``; ``agents/chiron.py`` composes them as an agent. Every number
is a named parameter with its default and source: (paper) the paper's structure, (QLM) the QLM
code, (SageServe) its ``ChironArbiter``, (ours) our reconstruction (``docs/agents.md``).

Why one module of over 450 lines: the two loops are one algorithm, read side by side against the
paper; each parameter record sits beside the loop that uses it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from chiron_gym.backends.base import PoolBounds
from chiron_gym.control.caps import DOUBLE, HALVE, INCREASE, KEEP, new_cap
from chiron_gym.sim.report import InstanceStats
from chiron_gym.sim.request import POOL_NAMES

# ------------------------------------------------------------------------------ the local loop


@dataclass
class LocalParams:
    """Local loop (per instance)."""

    period_s: float = 2.0  # (paper: a fast loop; value ours) seconds between two updates
    ewma_alpha: float = 0.5  # (ours) weight of the newest latency backpressure sample
    # (ours) ITL and TTFT are measured over this sliding window (token-weighted, as vLLM's
    # histograms): the prefills a cap increase admits stall decodes for a moment, not for life
    latency_window_s: float = 10.0
    # (ours, off: the paper's signal is ITL) latency backpressure may also count the mean TTFT
    # on the instance (from routing) over ``ttft_share`` x its SLO; docs/agents.md measures it
    use_ttft: bool = False
    ttft_share: float = 1.0
    # (ours) an increase is judged (throughput compared) after the new cap has bound this long:
    # one period's token count at a small cap is too noisy to compare
    settle_s: float = 6.0
    # (ours) throughput before / after an increase is evidence only when the running batch grew
    # by at least this share: evictions, or too little demand, kept the increase from acting
    occupancy_gain: float = 0.1
    # (paper: grow below 1, shrink above; the band is ours) backpressure in [grow_below, 1]:
    # hold. An increase that raised tokens/s by less than 1 / grow_below - 1 (11 %) is a plateau
    grow_below: float = 0.9
    double_below: float = 0.5  # (ours) grow by doubling while backpressure is under this
    # (ours) grow only while the running batch is at least this share of the cap: a cap far
    # above demand limits nothing, and it is the capacity the instance advertises to the global
    # loop (a cap grown to max_num_seqs at low load would advertise what the SLO cannot hold)
    grow_reach: float = 0.75
    use_throughput: bool = True  # False: the ``chiron-no-tbp`` ablation
    min_cap: int = 1  # (paper: not below a minimum)


@dataclass
class _CapState:
    """What the rule remembers of one instance (or one pool)."""

    bp: float = 0.0  # smoothed latency backpressure
    tbp: float = 0.0  # throughput backpressure of the current cap, once judged (0: none)
    judging: bool = False  # an increase waits to be judged
    rate_before: float = math.nan  # tokens/s while binding at the cap before the last change
    occ_before: float = math.nan  # mean running batch then
    bound_tokens: float = 0.0  # tokens, seconds and running-seconds while binding at the cap
    bound_s: float = 0.0
    bound_occ: float = 0.0
    tokens: int = 0  # counters at the previous update
    decode_tokens: int = 0
    decode_token_time_s: float = 0.0
    first_tokens: int = 0
    ttft_sum_s: float = 0.0
    t: float = math.nan
    # (decode tokens, their seconds, first tokens, their seconds, time) per update
    window: deque[tuple[int, float, int, float, float]] = field(default_factory=deque)


def cap_rule(
    p: LocalParams,
    s: _CapState,
    *,
    cap: int,
    max_cap: int,
    latency: float,
    tokens: float,
    dt: float,
    binding: bool,
    running: float,
) -> tuple[int, float]:
    """The local rule: the new cap, and the throughput backpressure judged now (0: none).

    ``latency`` is observed ITL over the SLO (0 when nothing decoded or there is no SLO);
    ``tokens`` were generated in the ``dt`` seconds since the last update, ``running`` requests
    run now; ``binding`` says the cap limits the instance (at its cap with work waiting for it).

    Backpressure is the larger of smoothed latency backpressure and the current cap's throughput
    backpressure, ``tokens/s before the last increase / tokens/s since``, both measured while the
    cap binds and judged once the new cap has bound for ``settle_s``, and only when the running
    batch grew by ``occupancy_gain`` (an increase that evictions or a lack of demand kept from
    acting says nothing of the engine). Above 1: halve (the smoothed latency then restarts from
    at most 1, so that a second halving needs fresh evidence). Under ``grow_below``: grow, to
    ``max_cap`` (the engine's ``max_num_seqs``) at most, doubling under ``double_below``; a cap
    that binds is grown only once judged. In between: hold.
    """
    if binding:
        s.bound_tokens += tokens
        s.bound_s += dt
        s.bound_occ += running * dt
    settled = s.bound_s >= p.settle_s and s.bound_s > 0
    judged_now = 0.0
    if s.judging and not binding:
        s.judging = False  # the increase never bound: no evidence, nothing to hold
    elif s.judging and settled:
        s.judging = False
        rate, occ = s.bound_tokens / s.bound_s, s.bound_occ / s.bound_s
        if occ >= s.occ_before * (1.0 + p.occupancy_gain):
            s.tbp = judged_now = s.rate_before / rate if rate > 0 else 2.0
    a = p.ewma_alpha
    s.bp = a * latency + (1 - a) * s.bp
    bp = max(s.bp, s.tbp if p.use_throughput else 0.0)
    if bp > 1.0:
        choice = HALVE
        s.bp = min(s.bp, 1.0)
    elif (
        bp < p.grow_below
        and not s.judging
        and (settled or not binding)
        and running >= p.grow_reach * cap
    ):
        choice = DOUBLE if bp < p.double_below else INCREASE
    else:
        choice = KEEP
    out = max(p.min_cap, new_cap(cap, choice, max_cap))
    if out != cap:
        measured = settled and binding
        s.rate_before = s.bound_tokens / s.bound_s if measured else math.nan
        s.occ_before = s.bound_occ / s.bound_s if measured else math.nan
        s.bound_tokens = s.bound_s = s.bound_occ = 0.0
        s.tbp = 0.0
        s.judging = out > cap and measured and p.use_throughput
    return out, judged_now


@dataclass(frozen=True, slots=True)
class InstanceLimits:
    """Per pool: the largest cap and the ITL SLO its tightest class sets (None: no SLO)."""

    max_cap: int
    itl_slo_s: float | None
    ttft_slo_s: float | None = None


class ChironLocal:
    """Per-instance batch caps from latency and throughput backpressure."""

    def __init__(self, params: LocalParams | None, interval_s: float) -> None:
        self.p = params or LocalParams()
        self.interval_s = interval_s  # the decision interval, for the pool-level ``choices``
        self.states: dict[int, _CapState] = {}
        self.pool_states: dict[str, _CapState] = {}
        self.last_tbp: dict[int, float] = {}

    def reset(self) -> None:
        self.states = {}
        self.pool_states = {}
        self.last_tbp = {}

    def update(
        self,
        now: float,
        stats: list[InstanceStats],
        limits: dict[int, InstanceLimits],
        queued: tuple[int, int],
    ) -> dict[int, int]:
        """New caps ``{instance_id: cap}`` for the instances whose cap changes.

        ``limits`` is keyed by pool index; ``queued`` the global queue lengths per class
        (interactive, batch): work waiting for an instance of a pool that serves that class.
        """
        out: dict[int, int] = {}
        seen: set[int] = set()
        for st in stats:
            seen.add(st.instance_id)
            s = self.states.get(st.instance_id)
            if s is None:
                s = self.states[st.instance_id] = _CapState()
            dt = now - s.t
            first = math.isnan(dt)
            d_tok = st.tokens_generated - s.tokens
            d_dec = st.decode_tokens - s.decode_tokens
            d_time = st.decode_token_time_s - s.decode_token_time_s
            s.tokens, s.decode_tokens = st.tokens_generated, st.decode_tokens
            s.decode_token_time_s, s.t = st.decode_token_time_s, now
            d_first = st.first_tokens - s.first_tokens
            d_ttft = st.ttft_sum_s - s.ttft_sum_s
            s.first_tokens, s.ttft_sum_s = st.first_tokens, st.ttft_sum_s
            if first or dt <= 0 or not st.ready:
                continue
            lim = limits[st.pool]
            win = s.window
            win.append((d_dec, d_time, d_first, d_ttft, now))
            while win and win[0][4] <= now - self.p.latency_window_s:
                win.popleft()
            latency = 0.0
            n_dec = sum(w[0] for w in win)
            if lim.itl_slo_s and n_dec > 0:
                latency = sum(w[1] for w in win) / n_dec / lim.itl_slo_s
            n_first = sum(w[2] for w in win)
            if self.p.use_ttft and lim.ttft_slo_s and n_first > 0:
                ttft = sum(w[3] for w in win) / n_first
                latency = max(latency, ttft / (self.p.ttft_share * lim.ttft_slo_s))
            wanted = queued[0] if st.pool == 0 else queued[1] if st.pool == 2 else sum(queued)
            binding = st.running >= st.batch_cap and (st.waiting > 0 or wanted > 0)
            cap, tbp = cap_rule(
                self.p,
                s,
                cap=st.batch_cap,
                max_cap=lim.max_cap,
                latency=latency,
                tokens=d_tok,
                dt=dt,
                binding=binding,
                running=st.running,
            )
            self.last_tbp[st.instance_id] = tbp
            if cap != st.batch_cap:
                out[st.instance_id] = cap
        for gone in set(self.states) - seen:
            del self.states[gone]
        return out

    def choices(self, raw: dict[str, float], max_caps: dict[str, int]) -> list[int]:
        """Pool-level cap choices from the observation, for ``action_mode="full"`` agents.

        The same rule on each pool's aggregate (the per-instance loop is ``update``; an agent
        that sets caps through the action can only set one per pool).
        """
        out: list[int] = []
        for pool in POOL_NAMES:
            if raw[f"{pool}.exists"] < 0.5 or raw[f"{pool}.ready"] < 1:
                out.append(KEEP)
                continue
            s = self.pool_states.setdefault(pool, _CapState())
            cls = "batch" if pool == "batch" else "interactive"
            cap = max(1, round(raw[f"{pool}.batch_cap"]))
            ready = raw[f"{pool}.ready"]
            waiting = raw[f"{pool}.waiting"] + (
                raw["interactive.queue"] + raw["batch.queue"]
                if pool == "mixed"
                else raw[f"{cls}.queue"]
            )
            binding = raw[f"{pool}.running"] >= cap * ready and waiting > 0
            new, _ = cap_rule(
                self.p,
                s,
                cap=cap,
                max_cap=max_caps.get(pool, cap),
                latency=raw[f"{cls}.itl_p95_over_slo"],
                tokens=raw[f"{pool}.tokens_per_s"] / max(1.0, ready) * self.interval_s,
                dt=self.interval_s,
                binding=binding,
                running=raw[f"{pool}.running"] / max(1.0, ready),
            )
            out.append(HALVE if new < cap else INCREASE if new > cap else KEEP)
            if new > cap and new >= 2 * cap:
                out[-1] = DOUBLE
        return out


# ------------------------------------------------------------------------------ the global loop


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """Static facts of the cluster: pools, GPU budget, cold start, decision interval."""

    pools: dict[str, PoolBounds]
    max_gpus: int | None
    cold_start_s: float
    decision_interval_s: float


@dataclass
class GlobalParams:
    """Global loop (cluster, every decision interval)."""

    upper_utilisation: float = 0.8  # (paper: bounds with hysteresis; values ours)
    lower_utilisation: float = 0.4  # (ours)
    up_windows: int = 1  # (ours) decisions above the upper bound before adding
    # (ours) scale-down looks back this many cold starts (capacity removed is only regained one
    # cold start later): mean utilisation under the lower bound and never above the upper one;
    # it then removes half the instances the window's peak did not need
    down_hold_cold_starts: float = 2.0
    min_down_hold_s: float = 60.0  # (ours) and at least this long
    # (ours) batch capacity goes after one cold start of ample slack: batch deadlines are long
    batch_down_hold_cold_starts: float = 1.0
    # (paper: keep headroom; values ours) at least this many instances, or this share of the
    # interactive instances needed (0 and 25 %: chosen on the loops suite, docs/results.md)
    headroom_instances: int = 0
    headroom_share: float = 0.25
    batch_add_above: float = 1.0  # (chiron.md) waiting time / slack above 1: add capacity
    batch_remove_below: float = 0.5  # (ours) ample slack: shrink to what the estimate needs
    batch_target: float = 0.8  # (ours) size batch capacity for this waiting time / slack
    max_step: int = 2  # instances per pool per decision (the env's k)
    # (ours) interactive utilisation is at least the window's p95 TTFT and ITL over their SLOs
    # times this: caps near max_num_seqs advertise more than the SLO holds (prefills of long
    # prompts stall decodes whatever the cap), so latency itself must reach the global loop
    latency_weight: float = 1.0
    latency_max: float = 2.0  # (ours) the most latency backpressure one decision sizes for


@dataclass
class GlobalState:
    above: int = 0
    # (seconds covered, utilisation, interactive work held) per decision since the last change
    history: deque[tuple[float, float, float]] = field(default_factory=deque)
    batch_slack_s: float = 0.0


class ChironGlobal:
    """Instance counts from interactive utilisation and batch waiting-time backpressure."""

    def __init__(self, params: GlobalParams | None, facts: ClusterFacts) -> None:
        self.p = params or GlobalParams()
        self.facts = facts
        self.s = GlobalState()

    def reset(self) -> None:
        self.s = GlobalState()

    def _hold_s(self, cold_starts: float | None = None) -> float:
        cold = self.facts.cold_start_s
        n = self.p.down_hold_cold_starts if cold_starts is None else cold_starts
        return max(self.p.min_down_hold_s, n * cold)

    def deltas(self, raw: dict[str, float]) -> list[int]:
        """Instance change per pool (interactive, mixed, batch)."""
        p = self.p
        dt = self.facts.decision_interval_s
        exists = {n: raw[f"{n}.exists"] > 0.5 for n in POOL_NAMES}
        live = {n: raw[f"{n}.ready"] + raw[f"{n}.starting"] for n in POOL_NAMES}
        cap = {n: max(1.0, raw[f"{n}.batch_cap"]) for n in POOL_NAMES}
        want = dict.fromkeys(POOL_NAMES, 0)
        urgent = False

        # Interactive backpressure: interactive work held over the capacity the caps advertise
        # on the instances that serve it (batch work on mixed instances does not count).
        held = raw["interactive.queue"]
        if exists["interactive"]:
            held += raw["interactive.running"] + raw["interactive.waiting"]
        if exists["mixed"]:
            held += raw["mixed.interactive_held"]
        serving = [n for n in ("interactive", "mixed") if exists[n]]
        capacity = sum(cap[n] * live[n] for n in serving)
        util = held / capacity if capacity > 0 else (math.inf if held > 0 else 0.0)
        lat = p.latency_weight * max(
            raw["interactive.ttft_p95_over_slo"], raw["interactive.itl_p95_over_slo"]
        )
        util = max(util, lat)
        self.s.above = self.s.above + 1 if util > p.upper_utilisation else 0
        hist = self.s.history
        hist.append((dt, util, held))
        hold = self._hold_s()
        while sum(h[0] for h in hist) - hist[0][0] >= hold:
            hist.popleft()
        covered = sum(h[0] for h in hist)
        quiet = (
            covered >= hold
            and sum(h[1] for h in hist) / len(hist) < p.lower_utilisation
            and max(h[1] for h in hist) <= p.upper_utilisation
        )
        peak = max(h[2] for h in hist)
        base = "interactive" if exists["interactive"] else "mixed" if exists["mixed"] else None
        if base is not None:
            per = cap[base]
            need_held = math.ceil(held / (p.upper_utilisation * per)) if held > 0 else 0
            needed = need_held
            # Latency-bound: in proportion to the excess (at most x2.5 of the pool at once), and
            # once per cold start: while added instances start, the latency they will relieve
            # is still the old one (sizing on it again would compound)
            starting = raw[f"{base}.starting"] >= 0.5
            if lat > p.upper_utilisation and not starting:
                excess = min(lat, p.latency_max) / p.upper_utilisation
                needed = max(needed, math.ceil(live[base] * excess))
            headroom = max(p.headroom_instances, math.ceil(p.headroom_share * needed))
            # The headroom lives in the mixed pool when there is one (batch work fills it).
            headroom_pool = "mixed" if exists["mixed"] else base
            in_base = headroom if headroom_pool == base else 0
            if self.s.above >= p.up_windows:
                short = needed + in_base - live[base]
                want[base] += max(1, math.ceil(short))
                # held work the pool cannot hold takes GPUs from batch; latency alone does not
                urgent = need_held + in_base > live[base]
                self.s.above = 0
                hist.clear()
            elif quiet:
                need_peak = math.ceil(peak / (p.upper_utilisation * per))
                spare = live[base] - need_peak - (headroom if headroom_pool == base else 0)
                if spare >= 1:
                    want[base] -= max(1, math.floor(spare / 2))
                if headroom_pool != base:
                    # the headroom follows the peak's needs down too, by half the excess
                    keep = max(p.headroom_instances, math.ceil(p.headroom_share * need_peak))
                    excess_h = live[headroom_pool] - keep
                    if excess_h >= 1:
                        want[headroom_pool] -= max(1, math.floor(excess_h / 2))
                hist.clear()
            if headroom_pool != base:
                want[headroom_pool] += max(0, headroom - round(live[headroom_pool]))

        # Batch backpressure: the QLM waiting-time estimate against the deadlines, on the
        # capacity (from the profile) of the instances that may serve batch.
        pressure = raw["batch.wait_over_slack"]
        required = raw["batch.required_tokens_per_s"]
        per_inst = max(1e-9, raw["batch.instance_tokens_per_s"])
        btarget = "batch" if exists["batch"] else "mixed" if exists["mixed"] else None
        if btarget is not None:
            spare = raw["batch.capacity_tokens_per_s"] - (
                live["batch"] * per_inst if btarget == "batch" else live["mixed"] * per_inst
            )
            need = max(0.0, required / p.batch_target - max(0.0, spare))
            desired = math.ceil(need / per_inst - 1e-9)
            cur = round(live[btarget]) + want[btarget]
            if pressure > p.batch_add_above:
                want[btarget] += max(1, desired - cur)
                self.s.batch_slack_s = 0.0
            elif pressure < p.batch_remove_below and desired < cur:
                self.s.batch_slack_s += dt
                if self.s.batch_slack_s >= self._hold_s(p.batch_down_hold_cold_starts):
                    shrink = desired - round(live[btarget])
                    # the mixed pool keeps what its headroom rule asked for
                    want[btarget] = max(want[btarget], shrink) if btarget == "mixed" else shrink
                    self.s.batch_slack_s = 0.0
            else:
                self.s.batch_slack_s = 0.0
        return self._fit(want, live, raw, urgent)

    def _fit(
        self, want: dict[str, int], live: dict[str, float], raw: dict[str, float], urgent: bool
    ) -> list[int]:
        """Bounds, step limit, and the GPU budget: interactive first; the batch pool gives GPUs
        back when interactive work is ``urgent`` (held work the pools cannot hold)."""
        p = self.p
        out = dict(want)
        facts = self.facts
        for n in POOL_NAMES:
            pf = facts.pools[n]
            out[n] = pf.clamp(round(live[n]), out[n]) if pf.exists else 0
        out = {n: max(-p.max_step, min(p.max_step, d)) for n, d in out.items()}
        if facts.max_gpus is not None:
            used = round(raw["gpus_over_budget"] * facts.max_gpus)
            room = facts.max_gpus - used  # draining instances hold their GPUs until done
            gpus = {n: facts.pools[n].gpus_per_instance for n in POOL_NAMES}
            freeing = sum(raw[f"{n}.draining"] * gpus[n] for n in POOL_NAMES)
            bmin = facts.pools["batch"].min_instances
            for n in POOL_NAMES:  # priority order: interactive, mixed, batch
                d = out[n]
                if d <= 0:
                    continue
                fit = min(d, max(0, room) // gpus[n])
                short = (d - fit) * gpus[n] - freeing
                if short > 0 and urgent and n != "batch" and facts.pools["batch"].exists:
                    # interactive work first: the batch pool gives GPUs back (they free when
                    # its instances have drained; the next decisions take them)
                    down = min(0, out["batch"])
                    give = min(
                        math.ceil(short / gpus["batch"]),
                        round(live["batch"]) + down - bmin,
                        p.max_step + down,
                    )
                    if give > 0:
                        out["batch"] = down - give
                        freeing += give * gpus["batch"]
                out[n] = fit
                room -= fit * gpus[n]
        return [out[n] for n in POOL_NAMES]


__all__ = [
    "POOL_NAMES",
    "ChironGlobal",
    "ChironLocal",
    "ClusterFacts",
    "GlobalParams",
    "InstanceLimits",
    "LocalParams",
    "cap_rule",
]
