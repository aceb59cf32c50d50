"""Random small clusters and workloads for property tests, drawn from a hypothesis seed."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from chiron_gym.sim import (
    POOLS,
    SLO,
    Cluster,
    ClusterConfig,
    ColdStart,
    InstanceSpec,
    InstanceState,
    KVLink,
    LinearPerfModel,
    PerfModel,
    Pool,
    PoolSpec,
    Workload,
)
from chiron_gym.sim.cluster import IterationHook


@dataclass(frozen=True)
class Case:
    """A random cluster, workload and action schedule."""

    config: ClusterConfig
    workload: Workload
    actions: list[tuple[float, list[tuple[Pool, int, int | None]]]]  # time, (pool, delta, cap)
    seed: int


def random_case(
    seed: int,
    *,
    scaling: bool = True,
    perf_model: PerfModel | None = None,
    prefix: bool = False,
    failures: bool = False,
    disaggregated: bool = False,
) -> Case:
    """A small, stressful case: tight KV (preemptions), mixed pools (swaps), scaling; with
    ``prefix``, prompts that share prefixes, served with prefix caching (and, half the time,
    prefix-aware routing); with ``failures``, instances that fail at drawn rates (up to one
    per GPU every 12 s) and at scripted times, spot instances reclaimed after a notice (up to
    one every 6 s), scale-ups half refused by stockouts, their requests requeued or refused; with
    ``disaggregated``, prefill and decode pools too (their own KV sizes, one to four GPUs each,
    over a slow link), alone or beside aggregated ones."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    horizon = float(rng.uniform(2.0, 30.0))
    linear = LinearPerfModel(
        overhead_s=float(rng.uniform(1e-3, 2e-2)),
        per_token_s=float(rng.uniform(0, 1e-4)),
        prefill_pair_s=float(rng.uniform(0, 1e-8)),
        decode_context_s=float(rng.uniform(0, 1e-5)),
    )
    spec = InstanceSpec(
        perf_model=perf_model or linear,
        kv_capacity_blocks=int(rng.integers(8, 120)),
        block_size_tokens=int(rng.choice([4, 16])),
        max_num_batched_tokens=int(rng.integers(8, 600)),
        max_batch_cap=16,
        kv_bytes_per_token=4096,
        pcie_bytes_per_s=1e8,
        cold_start=ColdStart(kind="lognormal", median_s=float(rng.uniform(0.5, 5.0)), sigma=0.3),
    )
    pools = [_pool(rng, p, spec) for p in POOLS if rng.random() < (0.3 if disaggregated else 0.8)]
    if disaggregated:
        for pool in (Pool.PREFILL, Pool.DECODE):
            own = replace(
                spec,
                kv_capacity_blocks=int(rng.integers(8, 120)),
                gpus=int(rng.integers(1, 5)),
                max_num_batched_tokens=int(rng.integers(8, 600)),
            )
            pools.append(_pool(rng, pool, own))
    if not pools:
        pools.append(
            PoolSpec(pool=Pool.MIXED, instance=spec, initial_instances=1, initial_batch_cap=4)
        )
    config = ClusterConfig(
        pools=tuple(pools),
        interactive_slo=SLO(
            ttft_s=float(rng.uniform(0.05, 2.0)), itl_s=float(rng.uniform(0.005, 0.1))
        ),
        group_granularity_s=float(rng.uniform(0.5, 10.0)),
    )
    if disaggregated:  # transfers about as long as iterations (kv_bytes_per_token 4096)
        bw, latency = float(rng.uniform(1e8, 1e10)), float(rng.uniform(0, 0.01))
        # swapped batch requests soon back in the queue, where a prefill instance may take them
        # with tokens already generated
        requeue = float(rng.uniform(0.0, 3.0))
        link = KVLink(bytes_per_s=bw, latency_s=latency)
        config = replace(config, kv_link=link, swap_requeue_s=requeue)
    klass = (rng.random(n) < 0.5).astype(np.int8)
    arrival = np.sort(rng.uniform(0, horizon, size=n))
    if rng.random() < 0.3:  # a bulk submission: many requests at the same instant
        arrival[: n // 2] = arrival[0]
        arrival = np.sort(arrival)
    workload = Workload.from_columns(
        arrival_s=arrival,
        klass=klass,
        prompt_tokens=rng.integers(1, 400, size=n),
        output_tokens=rng.integers(1, 120, size=n),
        deadline_s=np.where(klass == 1, arrival + rng.uniform(1, 60, size=n), np.nan),
    )
    actions: list[tuple[float, list[tuple[Pool, int, int | None]]]] = []
    t = 0.0
    while scaling and t < horizon:
        t += float(rng.uniform(0.5, 4.0))
        step: list[tuple[Pool, int, int | None]] = []
        for p in pools:
            if rng.random() < 0.4:
                delta = int(rng.integers(-2, 3))
                cap = int(rng.integers(1, 12)) if rng.random() < 0.5 else None
                step.append((p.pool, delta, cap))
        actions.append((t, step))
    if prefix:
        config, workload = _with_prefixes(rng, config, workload)
    if failures:
        config = _with_failures(rng, config, horizon)
    return Case(config=config, workload=workload, actions=actions, seed=seed)


def _pool(rng: np.random.Generator, pool: Pool, spec: InstanceSpec) -> PoolSpec:
    return PoolSpec(
        pool=pool,
        instance=spec,
        initial_instances=int(rng.integers(0, 3)),
        initial_batch_cap=int(rng.integers(1, 9)),
    )


def _with_failures(
    rng: np.random.Generator, config: ClusterConfig, horizon: float
) -> ClusterConfig:
    pools = tuple(
        replace(
            p,
            failures_per_gpu_hour=float(rng.choice([0.0, 30.0, 300.0])),
            reclaims_per_hour=float(rng.choice([0.0, 0.0, 100.0, 600.0])),
            reclaim_notice_s=float(rng.uniform(0.0, 5.0)),
            stockout_probability=float(rng.choice([0.0, 0.0, 0.5])),
            stockout_wait_s=float(rng.choice([0.0, 2.0])),  # refused: not granted, or waits
            gpu_price=float(rng.choice([1.0, 0.35])),  # on-demand, or spot's discount
        )
        for p in config.pools
    )
    names = [p.pool for p in pools]
    at = tuple(
        (float(rng.uniform(0, horizon)), names[int(rng.integers(len(names)))])
        for _ in range(int(rng.integers(0, 4)))
    )
    on = "reject" if rng.random() < 0.3 else "requeue"
    return replace(config, pools=pools, failures_at=at, on_failure=on)


def _with_prefixes(
    rng: np.random.Generator, config: ClusterConfig, workload: Workload
) -> tuple[ClusterConfig, Workload]:
    """Prefix caching on, and prompts that start with one of three shared chains of hashes (a
    random number of their units) followed by units of their own."""
    bs = config.pools[0].instance.block_size_tokens
    unit = bs * int(rng.choice([1, 2]))
    shared = [rng.integers(0, 1 << 40, size=40).tolist() for _ in range(3)]
    chains: list[tuple[int, ...]] = []
    for i, prompt in enumerate(workload.prompt_tokens.tolist()):
        units = -(-prompt // unit)
        k = min(units, int(rng.integers(0, 40)))
        own = [(1 << 50) + i * 1000 + j for j in range(units - k)]
        chains.append(tuple(shared[int(rng.integers(3))][:k] + own))
    pools = tuple(
        replace(p, instance=replace(p.instance, prefix_caching=True)) for p in config.pools
    )
    config = replace(config, pools=pools, prefix_routing=bool(rng.random() < 0.5))
    return config, replace(workload, prefix_blocks=tuple(chains), prefix_block_tokens=unit)


def run_case(
    case: Case,
    *,
    fast_forward: bool,
    drain_s: float = 5_000.0,
    aggregate: bool = True,
    on_iteration: IterationHook | None = None,
) -> Cluster:
    """Play the case's actions, then let the cluster drain."""
    cluster = Cluster(
        replace(case.config, fast_forward=fast_forward),
        case.workload,
        np.random.default_rng(case.seed),
        aggregate=aggregate,
        on_iteration=on_iteration,
        failure_rng=np.random.default_rng(case.seed + 1),
    )
    for t, step in case.actions:
        cluster.run_until(t)
        for pool, delta, cap in step:
            if cap is not None:
                cluster.set_batch_cap(pool, cap)
            if delta and not (delta > 0 and len(cluster.live_instances(pool)) >= 4):
                cluster.scale(pool, delta)
    # Make sure something (not draining) serves every pool so the run can drain.
    for pool in (Pool.MIXED, Pool.INTERACTIVE, Pool.BATCH, Pool.PREFILL, Pool.DECODE):
        configured = any(p.pool == pool for p in case.config.pools)
        serving = [i for i in cluster.live_instances(pool) if i.state != InstanceState.DRAINING]
        if configured and not serving:
            cluster.scale(pool, 1)
    cluster.run_until(cluster.now + drain_s)
    return cluster
