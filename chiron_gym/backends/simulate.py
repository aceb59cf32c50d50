"""Run one episode of a scenario on the simulator with a fixed (static) policy."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from chiron_gym.scenario import Scenario, stream
from chiron_gym.sim import Cluster, ClusterConfig, WindowReport

SUMMARY_CLASS_FIELDS = ("arrived", "met", "late", "rejected", "pending", "overdue")


def build_cluster(scenario: Scenario, seed: int, *, fast_forward: bool = True) -> Cluster:
    """The scenario's cluster at time 0, with its workload for ``seed``."""
    config: ClusterConfig = replace(scenario.cluster, fast_forward=fast_forward)
    return Cluster(
        config,
        scenario.workload(seed),
        stream(seed, "cold_start"),
        failure_rng=stream(seed, "failures"),
    )


def run_static(
    scenario: Scenario, seed: int, *, fast_forward: bool = True
) -> tuple[Cluster, list[WindowReport]]:
    """Run the whole horizon one decision interval at a time, never scaling."""
    cluster = build_cluster(scenario, seed, fast_forward=fast_forward)
    reports: list[WindowReport] = []
    steps = max(1, math.ceil(scenario.horizon_s / scenario.decision_interval_s - 1e-9))
    closed = cluster.workload.clients > 0
    for k in range(1, steps + 1):
        reports.append(cluster.run_until(min(k * scenario.decision_interval_s, scenario.horizon_s)))
        if closed and cluster.all_decided():
            break  # a closed loop's requests have all ended: nothing will arrive
    return cluster, reports


def _clean(x: float) -> float | None:
    return None if math.isnan(x) else x


def summarize(
    scenario: Scenario, seed: int, cluster: Cluster, wall_seconds: float
) -> dict[str, Any]:
    """The ``chiron simulate --json`` object."""
    classes: dict[str, Any] = {}
    for name, rep in cluster.summary().items():
        row: dict[str, Any] = {f: getattr(rep, f) for f in SUMMARY_CLASS_FIELDS}
        row["attainment"] = _clean(rep.attainment)
        row["rejected_by_reason"] = rep.rejected_by_reason
        row["met_output_tokens"] = rep.met_output_tokens
        for label, values in (("ttft", rep.ttft_s), ("itl", rep.itl_s)):
            for p, v in zip((50, 95, 99), values, strict=True):
                row[f"{label}_p{p}_s"] = _clean(v)
        row["ttft_mean_s"] = _clean(rep.ttft_mean_s)
        row["tpot_mean_s"] = _clean(rep.tpot_mean_s)
        row["output_tokens_per_s"] = _clean(rep.output_tokens_per_s)
        classes[name] = row
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": seed,
        "classes": classes,
        "gpu_hours": cluster.gpu_seconds() / 3600.0,
        "sim_seconds": cluster.now,
        "wall_seconds": wall_seconds,
    }
    hits = cluster.prefix_hit_rates()
    if hits:  # only where prefix caching looked something up (other outputs stay as they were)
        out["prefix_hit_rate"] = hits
    if scenario.cluster.has_failures:  # likewise
        f, pools = cluster.faults, scenario.cluster.pools
        out["failures"] = {p.pool.name.lower(): f.failures[p.pool] for p in pools}
        out["reclaims"] = {p.pool.name.lower(): f.reclaims[p.pool] for p in pools}
        out["stockouts"] = {p.pool.name.lower(): f.stockouts[p.pool] for p in pools}
    if scenario.cluster.disaggregated:  # likewise
        n = cluster.kv_transfers
        out["kv_transfers"] = n
        out["kv_transfer_mean_s"] = cluster.kv_transfer_s / n if n else None
    return out


def simulate(scenario: Scenario, seed: int, *, fast_forward: bool = True) -> dict[str, Any]:
    """Run a static episode and return its summary."""
    t0 = time.perf_counter()
    cluster, _ = run_static(scenario, seed, fast_forward=fast_forward)
    return summarize(scenario, seed, cluster, time.perf_counter() - t0)
