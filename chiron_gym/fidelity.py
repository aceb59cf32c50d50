"""Simulator against the real engine: ``chiron fidelity``.

The same request sequence (a scenario and a seed) is served twice under the same fixed policy
(the given servers, the scenario's batch caps, no scaling): by the simulator with a profile, and by
real vLLM servers through the real backend. Per class, the p50 and p95 of time to first token,
inter-token latency (per request: ``(finish - first token) / (output tokens - 1)``) and end-to-end
latency are compared on the requests both finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from chiron_gym.backends import SimBackend
from chiron_gym.backends.options import parse_endpoints as backend_endpoints
from chiron_gym.profiles import load as load_profile
from chiron_gym.scenario import Scenario
from chiron_gym.sim import CLASS_NAMES, POOL_NAMES, Workload

METRICS = ("ttft", "itl", "e2e")
QUANTILES = (50, 95)


@dataclass(frozen=True, slots=True)
class Run:
    """Per-request timings of one run (scenario seconds; NaN where not reached)."""

    first_token_s: np.ndarray
    finish_s: np.ndarray
    wall_s: float


@dataclass
class FidelityReport:
    scenario: str
    seed: int
    profile: str
    endpoints: dict[str, list[str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "profile": self.profile,
            "endpoints": self.endpoints,
            "rows": self.rows,
            "counts": self.counts,
            "wall_s": self.wall_s,
        }

    def markdown(self) -> str:
        lines = [
            "| class | metric | sim p50 | real p50 | err p50 | sim p95 | real p95 | err p95 |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in self.rows:
            cells = [r["class"], r["metric"]]
            for q in QUANTILES:
                cells += [
                    _ms(r[f"sim_p{q}_s"]),
                    _ms(r[f"real_p{q}_s"]),
                    _pct(r[f"rel_err_p{q}"]),
                ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{1e3 * x:.1f} ms"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:+.1f}%"


def parse_endpoints(specs: list[str], scenario: Scenario) -> dict[str, list[str]]:
    """``URL`` (the scenario's first pool) or ``pool=URL``, repeatable, into pool -> URLs (the
    backends' one endpoint parser, held to the scenario's pools)."""
    pools = [POOL_NAMES[int(p.pool)] for p in scenario.cluster.pools]
    out = backend_endpoints(specs, default_pool=pools[0], pools=pools)
    if not out:
        raise ValueError("fidelity needs at least one --endpoint")
    return out


def fixed_scenario(scenario: Scenario, counts: dict[str, int], profile: str | None) -> Scenario:
    """``scenario`` with ``counts`` instances per pool from the start (none elsewhere) and, when
    given, its instances on ``profile`` (keeping its KV block size and batch caps)."""
    pools = []
    for spec in scenario.cluster.pools:
        inst = spec.instance
        if profile is not None:
            prof = load_profile(profile)
            inst = prof.instance_spec(
                block_size_tokens=inst.block_size_tokens,
                max_num_batched_tokens=inst.max_num_batched_tokens,
                max_batch_cap=inst.max_batch_cap,
                kv_capacity_blocks=prof.kv.capacity_tokens // inst.block_size_tokens,
            )
        n = counts.get(POOL_NAMES[int(spec.pool)], 0)
        pools.append(replace(spec, instance=inst, initial_instances=n))
    return replace(scenario, cluster=replace(scenario.cluster, pools=tuple(pools)))


def _drive(backend: Any, scenario: Scenario, drain_s: float) -> None:
    """Advance with no actions to the horizon, then until every arrived request is done (or
    ``drain_s`` more seconds)."""
    t = 0.0
    step = scenario.decision_interval_s
    end = scenario.horizon_s
    while t < end - 1e-9:
        t = min(end, t + step)
        backend.advance(t)
    limit = end + drain_s
    while t < limit and _pending(backend) > 0:
        t = min(limit, t + 1.0)
        backend.advance(t)


def _pending(backend: Any) -> int:
    return sum(c.pending + c.queued for c in backend.summary().values())


def run_sim(scenario: Scenario, seed: int, drain_s: float = 300.0) -> Run:
    import time

    t0 = time.perf_counter()
    b = SimBackend(scenario)
    b.reset(seed)
    _drive(b, scenario, drain_s)
    c = b.cluster
    return Run(c.first_token_s.copy(), c.finish_s.copy(), time.perf_counter() - t0)


def run_real(
    scenario: Scenario,
    seed: int,
    endpoints: dict[str, list[str]],
    drain_s: float = 300.0,
    on_start: Callable[[Any], None] | None = None,
) -> Run:
    """Serve the requests on the servers at ``endpoints``; ``on_start(backend)`` is called once
    its clock has started (``backend.origin_monotonic``), before the first request."""
    import time

    from chiron_gym.backends.vllm import VllmBackend

    warm_up([u for urls in endpoints.values() for u in urls])
    t0 = time.perf_counter()
    b = VllmBackend(scenario, endpoints=endpoints)
    b.reset(seed)
    try:
        if on_start is not None:
            on_start(b)
        _drive(b, scenario, drain_s)
        return Run(b.first_token_s.copy(), b.finish_s.copy(), time.perf_counter() - t0)
    finally:
        b.close()


def warm_up(urls: list[str], token_id: int = 5) -> None:
    """Two short requests per server: a fresh server's first requests pay one-off costs."""
    import httpx

    for url in urls:
        try:
            model = httpx.get(f"{url}/v1/models", timeout=30.0).json()["data"][0]["id"]
            for _ in range(2):
                httpx.post(
                    f"{url}/v1/completions",
                    json={"model": model, "prompt": [token_id + 1] * 16, "max_tokens": 8},
                    timeout=120.0,
                ).raise_for_status()
        except Exception as e:
            raise RuntimeError(f"{url}: warm-up request failed: {e!r}") from e


def latencies(w: Workload, run: Run, sel: np.ndarray) -> dict[str, np.ndarray]:
    """Per-request TTFT, ITL and end-to-end latency of the requests ``sel`` of workload ``w``."""
    arrival = w.arrival_s[sel]
    first = run.first_token_s[sel]
    finish = run.finish_s[sel]
    out_tokens = w.output_tokens[sel]
    multi = out_tokens > 1
    return {
        "ttft": first - arrival,
        "itl": (finish[multi] - first[multi]) / (out_tokens[multi] - 1),
        "e2e": finish - arrival,
    }


def compare(
    scenario: Scenario,
    seed: int,
    sim: Run,
    real: Run,
    *,
    profile: str,
    endpoints: dict[str, list[str]],
) -> FidelityReport:
    rep = FidelityReport(scenario.name, seed, profile, endpoints)
    rep.wall_s = {"sim": sim.wall_s, "real": real.wall_s}
    w = scenario.workload(seed)
    both = ~np.isnan(sim.finish_s) & ~np.isnan(real.finish_s)
    for c, name in enumerate(CLASS_NAMES):
        sel = w.klass == c
        if not sel.any():
            continue
        rep.counts[name] = {
            "requests": int(sel.sum()),
            "finished_sim": int((sel & ~np.isnan(sim.finish_s)).sum()),
            "finished_real": int((sel & ~np.isnan(real.finish_s)).sum()),
            "compared": int((sel & both).sum()),
        }
        s_lat = latencies(w, sim, sel & both)
        r_lat = latencies(w, real, sel & both)
        for m in METRICS:
            row: dict[str, Any] = {"class": name, "metric": m}
            for q in QUANTILES:
                sv = float(np.percentile(s_lat[m], q)) if len(s_lat[m]) else math.nan
                rv = float(np.percentile(r_lat[m], q)) if len(r_lat[m]) else math.nan
                row[f"sim_p{q}_s"] = sv
                row[f"real_p{q}_s"] = rv
                row[f"rel_err_p{q}"] = (sv - rv) / rv if rv > 0 else math.nan
            rep.rows.append(row)
    return rep


def fidelity(
    scenario: Scenario,
    seed: int,
    profile: str,
    endpoints: dict[str, list[str]],
    drain_s: float = 300.0,
) -> FidelityReport:
    """Serve ``scenario``'s requests (seed ``seed``) on the simulator with ``profile`` and on the
    real servers at ``endpoints``, with as many instances per pool as endpoints given."""
    counts = {pool: len(urls) for pool, urls in endpoints.items()}
    real_scn = fixed_scenario(scenario, counts, None)
    sim_scn = fixed_scenario(scenario, counts, profile)
    real = run_real(real_scn, seed, endpoints, drain_s)
    sim = run_sim(sim_scn, seed, drain_s)
    return compare(sim_scn, seed, sim, real, profile=profile, endpoints=endpoints)


__all__ = ["FidelityReport", "compare", "fidelity", "parse_endpoints"]
