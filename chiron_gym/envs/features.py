"""The observation: named raw features, and their normalised float32 vector.

Every feature has a name, a unit and a normalisation (``FEATURES``); ``docs/env.md`` shows the
table. The raw values go in ``info["raw"]``; the vector is ``clip(raw / scale, 0, HIGH)``
(log features use ``log1p(raw) / scale``). Pools and classes always take the same slots, present
or not, so a policy trained on one scenario runs on another. The tables (``FEATURES`` of
``chiron_gym/Autoscale-v0``, ``FEATURES_V1`` of ``Autoscale-v1``) live in ``feature_table.py``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from chiron_gym.backends.base import Backend, PoolBounds, PoolState
from chiron_gym.control.qlm import (
    at_risk,
    estimate,
    max_pressure,
    predicted_late,
    required_rate,
)
from chiron_gym.envs.feature_table import (
    _TABLES,
    FEATURES,
    FEATURES_V1,
    PD_POOL_NAMES,
    Feature,
)
from chiron_gym.scenario import Scenario
from chiron_gym.sim import (
    ALL_POOL_NAMES,
    ALL_POOLS,
    CLASS_NAMES,
    POOL_NAMES,
    POOLS,
    BatchComposition,
    Pool,
    PoolReport,
    WindowReport,
)

HIGH = 10.0  # upper bound of every normalised feature

HISTORY_SPANS_S = (60.0, 300.0)  # the arrival-history features' spans (fifth release)


class ArrivalHistory:
    """The interactive arrivals of the windows that ended in the last ``HISTORY_SPANS_S[-1]``
    seconds: ``(end time, duration, arrivals)``."""

    def __init__(self) -> None:
        self._windows: deque[tuple[float, float, int]] = deque()

    def clear(self) -> None:
        self._windows.clear()

    def add(self, end_s: float, duration_s: float, arrived: int) -> None:
        """Record one window (a zero-length one, like reset's, records nothing)."""
        if duration_s > 0:
            self._windows.append((end_s, duration_s, arrived))
        while self._windows and self._windows[0][0] <= end_s - HISTORY_SPANS_S[-1] + 1e-9:
            self._windows.popleft()

    def features(self, now_s: float) -> tuple[float, float, float]:
        """Arrivals per second over the last 60 s and 300 s (0: no window), and the busiest
        window's rate over the 300 s mean (1: flat or no arrivals). Every kept window ended in
        the last 300 s."""
        n_short = n_long = 0
        dur_short = dur_long = 0.0
        for end, d, a in self._windows:
            n_long += a
            dur_long += d
            if end > now_s - HISTORY_SPANS_S[0] + 1e-9:
                n_short += a
                dur_short += d
        short = n_short / dur_short if dur_short > 0 else 0.0
        long = n_long / dur_long if dur_long > 0 else 0.0
        if long <= 0:
            return short, long, 1.0
        return short, long, max(a / d for _, d, a in self._windows) / long


def _ratio(value: float, slo: float | None) -> float:
    if slo is None or math.isnan(value):
        return 0.0
    return value / slo


class FeatureBuilder:
    """Computes the raw features and their normalised vector for one scenario."""

    def __init__(
        self, scenario: Scenario, z: float = 1.645, pools: tuple[Pool, ...] = POOLS
    ) -> None:
        self.scenario = scenario
        # the pools observed: Autoscale-v0's three, or every pool with ``FEATURES_V1``
        self.pools = pools
        self.names = tuple(ALL_POOL_NAMES[p] for p in pools)
        if pools not in (POOLS, ALL_POOLS):
            raise ValueError(f"pools {pools}: expected {POOLS} or {ALL_POOLS}")
        self.disaggregated = pools == ALL_POOLS
        # the capacity events counted up to the last observation (Autoscale-v1's windows)
        self._events_before: dict[Pool, tuple[int, int, int]] = {}
        self.z = z
        self.batch_predicted_late = 0  # set by each observation (see raw)
        self.max_gpus = scenario.max_gpus
        specs = {p.pool: p for p in scenario.cluster.pools}
        self._prices = {p: s.gpu_price for p, s in specs.items()}  # fixed for the episode
        self.cold_start_s = max(
            (s.instance.cold_start.median_s for s in specs.values()), default=0.0
        )
        fallback = [s.output for s in scenario.sources if s.output is not None and s.klass == 1]
        self.fallback_output = fallback[0].mean if fallback else 256.0
        prompts = [s.prompt for s in scenario.sources if s.prompt is not None and s.klass == 1]
        self.batch_prompt = prompts[0].mean if prompts else 512.0
        self._specs = specs
        self._capacity: dict[tuple[Pool, int, int], float] = {}
        self.history = ArrivalHistory()  # cleared by ``reset`` at each episode's start
        # the pools' hardware, fixed for the episode: GPUs per instance, and decode speed at a
        # reference batch relative to the mean of the pools
        ref = BatchComposition.with_decodes([], [], [1024] * 32)
        speed = {
            ALL_POOL_NAMES[p]: 32.0 / s.instance.perf_model.iteration_time_s(ref)
            for p, s in specs.items()
        }
        mean = sum(speed.values()) / len(speed) if speed else 1.0
        self._hardware: dict[str, float] = {}
        for p in pools:
            name = ALL_POOL_NAMES[p]
            spec = specs.get(p)
            self._hardware[f"{name}.gpus_per_instance"] = (
                float(spec.instance.gpus) if spec is not None else 0.0
            )
            self._hardware[f"{name}.relative_speed"] = speed.get(name, 0.0) / mean

    @property
    def features(self) -> tuple[Feature, ...]:
        """The feature table (a module constant: snapshots do not copy it)."""
        return FEATURES_V1 if self.disaggregated else FEATURES

    def instance_capacity(self, pool: Pool, cap: int, mean_output: float) -> float:
        """Output tokens/s one instance of ``pool`` sustains at batch cap ``cap`` (profile).

        ``n = min(cap, what the KV cache holds)`` requests decode at mean context
        ``prompt + output / 2``; each request also costs its prefill's marginal time. Requests/s
        ``r = 1 / (t_prefill + output * t_decode(n) / n)``; tokens/s ``r * output``.
        """
        out_mean = max(1, round(mean_output))
        key = (pool, cap, out_mean)
        hit = self._capacity.get(key)
        if hit is not None:
            return hit
        spec = self._specs.get(pool)
        if spec is None or cap < 1:
            return 0.0
        inst = spec.instance
        prompt = max(1, round(self.batch_prompt))
        per_req = prompt + out_mean
        n = max(1, min(cap, inst.kv_capacity_tokens // per_req))
        ctx = prompt + out_mean // 2
        model = inst.perf_model
        t_dec = model.iteration_time_s(BatchComposition.with_decodes([], [], [ctx] * n))
        chunk = min(prompt, inst.max_num_batched_tokens)
        rest = [ctx] * (n - 1)
        t_mix = model.iteration_time_s(BatchComposition.with_decodes([chunk], [0], rest))
        t_rest = (
            model.iteration_time_s(BatchComposition.with_decodes([], [], rest)) if rest else 0.0
        )
        t_pre = max(0.0, t_mix - t_rest) * prompt / chunk
        rate = 1.0 / (t_pre + out_mean * t_dec / n)
        value = rate * out_mean
        self._capacity[key] = value
        return value

    def reset(self) -> None:
        """Forget the previous episode (its arrival history and capacity events)."""
        self.history.clear()
        self._events_before = {}

    def observe(
        self,
        backend: Backend,
        window: WindowReport,
        horizon_s: float,
        states: Mapping[str, PoolState] | None = None,
    ) -> tuple[dict[str, float], npt.NDArray[np.float32]]:
        """The raw features and the normalised observation, from one read of the pools' state
        (``states`` by pool name, read now when not given)."""
        if states is None:
            states = self.states(backend)
        raw = self.raw(backend, window, horizon_s, states)
        return raw, self.vector(raw, {name: st.bounds for name, st in states.items()})

    def states(self, backend: Backend) -> dict[str, PoolState]:
        """The observed pools' state now, by name."""
        return {name: backend.pool_state(p) for p, name in zip(self.pools, self.names, strict=True)}

    def raw(
        self,
        backend: Backend,
        window: WindowReport,
        horizon_s: float,
        states: Mapping[str, PoolState],
    ) -> dict[str, float]:
        """Raw feature values (units as in ``FEATURES``)."""
        out: dict[str, float] = {}
        dur = max(window.duration_s, 1e-9)
        budget_den = 0
        for name in self.names:
            st = states[name]
            # (P/D table) a scenario without prefill and decode pools reports none: absent, all 0
            rep = window.pools.get(name) or PoolReport()
            out[f"{name}.exists"] = float(st.exists)
            out[f"{name}.ready"] = float(st.ready)
            out[f"{name}.starting"] = float(st.starting)
            out[f"{name}.draining"] = float(st.draining)
            out[f"{name}.batch_cap"] = float(st.batch_cap)
            out[f"{name}.running"] = float(rep.running)
            out[f"{name}.waiting"] = float(rep.waiting)
            out[f"{name}.kv_usage"] = float(rep.kv_usage)
            out[f"{name}.tokens_per_s"] = rep.tokens_generated / dur
            out[f"{name}.prefix_hit_rate"] = rep.prefix_hit_rate
            if st.exists:
                budget_den += st.bounds.max_instances * st.bounds.gpus_per_instance
        slos = (self.scenario.cluster.interactive_slo, self.scenario.cluster.batch_slo)
        for c, name in enumerate(CLASS_NAMES):
            rep_c = window.classes[name]
            out[f"{name}.queue"] = float(rep_c.queued)
            out[f"{name}.arrival_rate"] = rep_c.arrived / dur
            out[f"{name}.ttft_p95_over_slo"] = _ratio(rep_c.ttft_s[1], slos[c].ttft_s)
            out[f"{name}.itl_p95_over_slo"] = _ratio(rep_c.itl_s[1], slos[c].itl_s)
            att = rep_c.attainment
            out[f"{name}.attainment"] = 1.0 if math.isnan(att) else att
        self.history.add(backend.now, window.duration_s, window.classes[CLASS_NAMES[0]].arrived)
        (
            out["interactive.arrival_rate_1m"],
            out["interactive.arrival_rate_5m"],
            out["interactive.arrival_peak_over_mean_5m"],
        ) = self.history.features(backend.now)
        mu, sigma, n = backend.output_length_stats(1)
        if n < 10:
            mu, sigma = self.fallback_output, self.fallback_output
        # Capacity serving batch, from the profile: batch instances (ready or starting) at
        # their cap, plus the mixed instances' share left by their interactive work.
        held_mixed = 0
        for st_i in backend.instance_stats():
            if st_i.pool == Pool.MIXED:
                held_mixed += st_i.interactive_held
        out["mixed.interactive_held"] = float(held_mixed)
        b_pool = Pool.BATCH if out["batch.exists"] > 0.5 else Pool.MIXED
        b_name = POOL_NAMES[b_pool]
        per_inst = self.instance_capacity(b_pool, max(1, round(out[f"{b_name}.batch_cap"])), mu)
        capacity = 0.0
        if out["batch.exists"] > 0.5:
            capacity += (out["batch.ready"] + out["batch.starting"]) * per_inst
        if out["mixed.exists"] > 0.5 and out["mixed.ready"] > 0:
            m_cap = max(1, round(out["mixed.batch_cap"]))
            free = max(0.0, 1.0 - held_mixed / (m_cap * out["mixed.ready"]))
            capacity += out["mixed.ready"] * free * self.instance_capacity(Pool.MIXED, m_cap, mu)
        out["batch.capacity_tokens_per_s"] = capacity
        out["batch.instance_tokens_per_s"] = per_inst
        groups = backend.batch_groups()
        est = estimate(
            groups,
            now_s=backend.now,
            tokens_per_s=capacity,
            mean_output=mu,
            std_output=sigma,
            startup_s=self.cold_start_s,
            z=self.z,
        )
        pressure = max_pressure(est)
        out["batch.wait_over_slack"] = HIGH * 2 if math.isinf(pressure) else pressure
        out["batch.required_tokens_per_s"] = required_rate(est)
        out["batch.at_risk"] = float(at_risk(est, groups, backend.now))
        # for the episode end's charge (not a feature): queued, not yet late, but predicted to be
        self.batch_predicted_late = predicted_late(est, groups, backend.now)
        gpus = backend.gpus_in_use()
        den = self.max_gpus or budget_den or 1
        out["gpus_over_budget"] = gpus / den
        out["time_left"] = max(0.0, 1.0 - backend.now / horizon_s)
        out.update(self._hardware)
        if self.disaggregated:
            self._disaggregated(backend, window, out)
        return out

    def _disaggregated(self, backend: Backend, window: WindowReport, out: dict[str, float]) -> None:
        """``FEATURES_V1``'s own features (after v0's and the prefill and decode pools')."""
        for name in PD_POOL_NAMES:
            rep = window.pools.get(name) or PoolReport()
            out[f"{name}.transfers"] = float(rep.transfers)
            if name == "prefill":
                out["prefill.prompt_tokens_queued"] = float(rep.prompt_tokens_queued)
        inter = window.classes[CLASS_NAMES[0]]
        slo = self.scenario.cluster.interactive_slo
        out["interactive.ttft_p50_over_slo"] = _ratio(inter.ttft_s[0], slo.ttft_s)
        out["interactive.itl_p50_over_slo"] = _ratio(inter.itl_s[0], slo.itl_s)
        arrived, _ = backend.arrived_since(window.t_start_s)
        prompts = arrived.prompt_tokens[arrived.klass == 0]
        out["interactive.prompt_tokens_mean"] = float(prompts.mean()) if len(prompts) else 0.0
        mu, _, n = backend.output_length_stats(0)
        out["interactive.output_tokens_mean"] = mu if n else 0.0
        events = backend.capacity_events()
        for pool in ALL_POOLS:
            name = ALL_POOL_NAMES[pool]
            failed, notices, refused, reclaiming = events.get(pool, (0, 0, 0, 0))
            f0, n0, r0 = self._events_before.get(pool, (0, 0, 0))
            self._events_before[pool] = (failed, notices, refused)
            out[f"{name}.failures"] = float(failed - f0)
            out[f"{name}.reclaim_notices"] = float(notices - n0)
            out[f"{name}.stockouts"] = float(refused - r0)
            out[f"{name}.reclaiming"] = float(reclaiming)
            out[f"{name}.gpu_price"] = self._prices.get(pool, 0.0)

    def vector(
        self, raw: dict[str, float], pools: Mapping[str, PoolBounds]
    ) -> npt.NDArray[np.float32]:
        """The normalised observation (pool bounds as the backend states them): ``normalise``
        of every feature, the same floats, with the table's constant scales read once
        (``_Plan``)."""
        plan = _PLANS[self.disaggregated]  # a module constant: snapshots do not copy it
        values = [raw[name] for name in plan.names]
        for i in plan.logs:
            values[i] = math.log1p(max(values[i], 0.0))
        scales = plan.scales.copy()
        for i, f in plan.varying:
            scales[i] = _scale(f, raw, pools)
        vec = np.array(values, dtype=np.float64) / scales
        return np.clip(vec, 0.0, HIGH).astype(np.float32)


class _Plan:
    """A feature table's normalisation read once: the names in order, the log features, the
    constant scales, and the features whose scale depends on the pools (``_scale``)."""

    def __init__(self, table: tuple[Feature, ...]) -> None:
        self.names = [f.name for f in table]
        self.logs = [i for i, f in enumerate(table) if f.scale.startswith("log:")]
        self.varying: list[tuple[int, Feature]] = []
        self.scales = np.ones(len(table), dtype=np.float64)
        for i, f in enumerate(table):
            if f.scale in _POOL_SCALES:
                self.varying.append((i, f))
            else:
                self.scales[i] = _scale(f, {}, {})


_POOL_SCALES = frozenset({"max_instances", "max_batch_cap", "per_instance_cap"})


def _scale(f: Feature, raw: Mapping[str, float], pools: Mapping[str, PoolBounds]) -> float:
    """What ``f``'s raw value is divided by (for a ``log:n`` feature, what divides its log1p).

    ``per_instance_cap`` reads the pool's raw ``batch_cap`` and ``ready``: ``decode`` restores
    those first.
    """
    prefix = f.name.split(".")[0]
    pool = pools.get(prefix)
    if f.scale == "max_instances":
        return max(1, pool.max_instances if pool and pool.exists else 1)
    if f.scale == "max_batch_cap":
        return max(1, pool.max_batch_cap if pool else 1)
    if f.scale == "per_instance_cap":
        cap = raw[f"{prefix}.batch_cap"] or 1.0
        return max(1.0, cap * max(1.0, raw[f"{prefix}.ready"]))
    return float(f.scale[4:] if f.scale.startswith("log:") else f.scale)


def normalise(
    f: Feature, value: float, raw: Mapping[str, float], pools: Mapping[str, PoolBounds]
) -> float:
    """``f``'s observation entry for raw ``value`` (before the clip to ``[0, HIGH]``)."""
    scale = _scale(f, raw, pools)
    if f.scale.startswith("log:"):
        return math.log1p(max(value, 0.0)) / scale
    return value / scale


def denormalise(
    f: Feature, x: float, raw: Mapping[str, float], pools: Mapping[str, PoolBounds]
) -> float:
    """The raw value of ``f`` back from its observation entry ``x`` (``normalise``'s inverse)."""
    scale = _scale(f, raw, pools)
    if f.scale.startswith("log:"):
        return math.expm1(x * scale)
    return x * scale


_PLANS = {False: _Plan(FEATURES), True: _Plan(FEATURES_V1)}  # (needs ``_scale``)


def decode(obs: npt.ArrayLike, pools: Mapping[str, PoolBounds]) -> dict[str, float]:
    """Raw feature values back from a normalised observation (exact below the clip at 10);
    the table (``FEATURES`` or ``FEATURES_V1``) is the one of the observation's length."""
    x = np.asarray(obs, dtype=np.float64).reshape(-1)
    table = _TABLES.get(len(x))
    if table is None:
        raise ValueError(
            f"an observation of {len(x)} features: expected {len(FEATURES)} "
            f"(chiron_gym/Autoscale-v0) or {len(FEATURES_V1)} "
            "(chiron_gym/Autoscale-v1)"
        )
    raw: dict[str, float] = {}
    # per-instance features last: they are scaled by the pool's decoded cap and ready count
    order = sorted(range(len(table)), key=lambda i: table[i].scale == "per_instance_cap")
    for i in order:
        f = table[i]
        raw[f.name] = denormalise(f, float(x[i]), raw, pools)
    return raw
