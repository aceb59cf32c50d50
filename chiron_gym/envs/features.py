"""The observation: named raw features, and their normalised float32 vector.

Every feature has a name, a unit and a normalisation (``FEATURES``); ``docs/env.md`` shows the
table. The raw values go in ``info["raw"]``; the vector is ``clip(raw / scale, 0, HIGH)``
(log features use ``log1p(raw) / scale``). Pools and classes always take the same slots, present
or not, so a policy trained on one scenario runs on another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chiron_gym.backends.base import Backend
from chiron_gym.control.qlm import estimate, max_pressure
from chiron_gym.scenario import Scenario
from chiron_gym.sim import Pool, WindowReport

POOLS = (Pool.INTERACTIVE, Pool.MIXED, Pool.BATCH)
POOL_NAMES = ("interactive", "mixed", "batch")
CLASS_NAMES = ("interactive", "batch")
HIGH = 10.0  # upper bound of every normalised feature


@dataclass(frozen=True, slots=True)
class Feature:
    """A named observation feature: raw unit and how it is normalised."""

    name: str
    unit: str
    scale: str  # "max_instances", "max_batch_cap", "per_instance_cap", a number, or "log:<n>"
    doc: str


def _pool_features(p: str) -> list[Feature]:
    return [
        Feature(f"{p}.exists", "0/1", "1", "the scenario has this pool"),
        Feature(f"{p}.ready", "instances", "max_instances", "ready instances"),
        Feature(f"{p}.starting", "instances", "max_instances", "instances in their cold start"),
        Feature(f"{p}.draining", "instances", "max_instances", "instances finishing their work"),
        Feature(f"{p}.batch_cap", "requests", "max_batch_cap", "run-time batch size per instance"),
        Feature(
            f"{p}.running",
            "requests",
            "per_instance_cap",
            "requests running on the pool (vLLM num_requests_running)",
        ),
        Feature(
            f"{p}.waiting",
            "requests",
            "per_instance_cap",
            "requests waiting on the pool's instances (vLLM num_requests_waiting)",
        ),
        Feature(f"{p}.kv_usage", "fraction", "1", "mean KV-cache usage (vLLM kv_cache_usage_perc)"),
        Feature(f"{p}.tokens_per_s", "tokens/s", "log:10", "output tokens per second, last window"),
    ]


def _class_features(c: str) -> list[Feature]:
    return [
        Feature(f"{c}.queue", "requests", "log:10", "requests in the global queue"),
        Feature(f"{c}.arrival_rate", "requests/s", "log:5", "arrivals per second, last window"),
        Feature(
            f"{c}.ttft_p95_over_slo", "ratio", "2", "TTFT p95 / TTFT SLO, last window (0: none)"
        ),
        Feature(f"{c}.itl_p95_over_slo", "ratio", "2", "ITL p95 / ITL SLO, last window (0: none)"),
        Feature(
            f"{c}.attainment", "fraction", "1", "SLO attainment in the window (1: none decided)"
        ),
    ]


FEATURES: tuple[Feature, ...] = (
    *(f for p in POOL_NAMES for f in _pool_features(p)),
    *(f for c in CLASS_NAMES for f in _class_features(c)),
    Feature(
        "batch.wait_over_slack",
        "ratio",
        "2",
        "QLM waiting-time estimate of the most urgent batch group / time to its deadline",
    ),
    Feature("gpus_over_budget", "fraction", "1", "GPUs held / GPU budget (or / max possible)"),
    Feature("time_left", "fraction", "1", "share of the episode still to run"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


def _ratio(value: float, slo: float | None) -> float:
    if slo is None or math.isnan(value):
        return 0.0
    return value / slo


class FeatureBuilder:
    """Computes the raw features and their normalised vector for one scenario."""

    def __init__(self, scenario: Scenario, z: float = 1.645) -> None:
        self.scenario = scenario
        self.z = z
        self.max_gpus = scenario.max_gpus
        specs = {p.pool: p for p in scenario.cluster.pools}
        self.cold_start_s = max(
            (s.instance.cold_start.median_s for s in specs.values()), default=0.0
        )
        fallback = [s.output for s in scenario.sources if s.output is not None and s.klass == 1]
        self.fallback_output = fallback[0].mean if fallback else 256.0

    def raw(self, backend: Backend, window: WindowReport, horizon_s: float) -> dict[str, float]:
        """Raw feature values (units as in ``FEATURES``)."""
        out: dict[str, float] = {}
        dur = max(window.duration_s, 1e-9)
        budget_den = 0
        for pool, name in zip(POOLS, POOL_NAMES, strict=True):
            st = backend.pool_state(pool)
            rep = window.pools[name]
            out[f"{name}.exists"] = float(st.exists)
            out[f"{name}.ready"] = float(st.ready)
            out[f"{name}.starting"] = float(st.starting)
            out[f"{name}.draining"] = float(st.draining)
            out[f"{name}.batch_cap"] = float(st.batch_cap)
            out[f"{name}.running"] = float(rep.running)
            out[f"{name}.waiting"] = float(rep.waiting)
            out[f"{name}.kv_usage"] = float(rep.kv_usage)
            out[f"{name}.tokens_per_s"] = rep.tokens_generated / dur
            if st.exists:
                budget_den += st.max_instances * st.gpus_per_instance
        slos = (self.scenario.cluster.interactive_slo, self.scenario.cluster.batch_slo)
        for c, name in enumerate(CLASS_NAMES):
            rep_c = window.classes[name]
            out[f"{name}.queue"] = float(rep_c.queued)
            out[f"{name}.arrival_rate"] = rep_c.arrived / dur
            out[f"{name}.ttft_p95_over_slo"] = _ratio(rep_c.ttft_s[1], slos[c].ttft_s)
            out[f"{name}.itl_p95_over_slo"] = _ratio(rep_c.itl_s[1], slos[c].itl_s)
            att = rep_c.attainment
            out[f"{name}.attainment"] = 1.0 if math.isnan(att) else att
        mu, sigma, n = backend.output_length_stats(1)
        if n < 10:
            mu, sigma = self.fallback_output, self.fallback_output
        serving = out["batch.tokens_per_s"] + out["mixed.tokens_per_s"]
        est = estimate(
            backend.batch_groups(),
            now_s=backend.now,
            tokens_per_s=serving,
            mean_output=mu,
            std_output=sigma,
            startup_s=self.cold_start_s,
            z=self.z,
        )
        pressure = max_pressure(est)
        out["batch.wait_over_slack"] = HIGH * 2 if math.isinf(pressure) else pressure
        gpus = backend.gpus_in_use()
        den = self.max_gpus or budget_den or 1
        out["gpus_over_budget"] = gpus / den
        out["time_left"] = max(0.0, 1.0 - backend.now / horizon_s)
        return out

    def vector(self, raw: dict[str, float], backend: Backend) -> npt.NDArray[np.float32]:
        """The normalised observation."""
        vec = np.empty(len(FEATURES), dtype=np.float64)
        states = {name: backend.pool_state(p) for p, name in zip(POOLS, POOL_NAMES, strict=True)}
        for i, f in enumerate(FEATURES):
            v = raw[f.name]
            pool = states.get(f.name.split(".")[0])
            if f.scale == "max_instances":
                v /= max(1, pool.max_instances if pool and pool.exists else 1)
            elif f.scale == "max_batch_cap":
                v /= max(1, pool.max_batch_cap if pool else 1)
            elif f.scale == "per_instance_cap":
                cap = pool.batch_cap if pool and pool.batch_cap else 1
                v /= max(1, cap * max(1, pool.ready if pool else 1))
            elif f.scale.startswith("log:"):
                v = math.log1p(max(v, 0.0)) / float(f.scale[4:])
            else:
                v /= float(f.scale)
            vec[i] = v
        return np.clip(vec, 0.0, HIGH).astype(np.float32)


@dataclass(frozen=True, slots=True)
class PoolStatic:
    """What does not change within an episode about a pool (for decoding and for agents)."""

    exists: bool
    min_instances: int
    max_instances: int
    max_batch_cap: int
    gpus_per_instance: int
    kv_capacity_tokens: int
    block_size_tokens: int


def decode(obs: npt.ArrayLike, pools: dict[str, PoolStatic]) -> dict[str, float]:
    """Raw feature values back from a normalised observation (exact below the clip at 10)."""
    x = np.asarray(obs, dtype=np.float64).reshape(-1)
    raw: dict[str, float] = {}
    order = sorted(range(len(FEATURES)), key=lambda i: FEATURES[i].scale == "per_instance_cap")
    for i in order:
        f = FEATURES[i]
        v = float(x[i])
        pool = pools.get(f.name.split(".")[0])
        if f.scale == "max_instances":
            v *= max(1, pool.max_instances if pool and pool.exists else 1)
        elif f.scale == "max_batch_cap":
            v *= max(1, pool.max_batch_cap if pool else 1)
        elif f.scale == "per_instance_cap":
            p = f.name.split(".")[0]
            cap = raw[f"{p}.batch_cap"] or 1.0
            v *= max(1.0, cap * max(1.0, raw[f"{p}.ready"]))
        elif f.scale.startswith("log:"):
            v = math.expm1(v * float(f.scale[4:]))
        else:
            v *= float(f.scale)
        raw[f.name] = v
    return raw
