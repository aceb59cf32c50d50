"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from chiron_gym.sim import (
    SLO,
    Cluster,
    ClusterConfig,
    ColdStart,
    InstanceSpec,
    LinearPerfModel,
    Pool,
    PoolSpec,
    Workload,
)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def require_data(relative: str) -> Path:
    """Path under ../shared/data; skip when absent, fail when CHIRON_REQUIRE_DATA=1."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"real data {path} is absent (set up ../shared/data beside the repository)"
        if os.environ.get("CHIRON_REQUIRE_DATA") == "1":
            pytest.fail(message + "; CHIRON_REQUIRE_DATA=1 makes this a failure")
        pytest.skip(message)
    return path


def small_spec(**overrides: object) -> InstanceSpec:
    """A small instance type with a linear model, for hand-made clusters."""
    params: dict[str, object] = {
        "perf_model": LinearPerfModel(),
        "kv_capacity_blocks": 2000,
        "max_num_batched_tokens": 512,
        "max_batch_cap": 64,
        "cold_start": ColdStart(kind="fixed", median_s=30.0),
    }
    params.update(overrides)
    return InstanceSpec(**params)  # type: ignore[arg-type]


def make_cluster(
    workload: Workload,
    pools: dict[Pool, tuple[int, int]],
    spec: InstanceSpec | None = None,
    *,
    fast_forward: bool = True,
    slo: SLO | None = None,
    seed: int = 0,
) -> Cluster:
    """A cluster with ``pools[pool] = (initial instances, batch cap)``."""
    spec = spec or small_spec()
    config = ClusterConfig(
        pools=tuple(
            PoolSpec(pool=p, instance=spec, initial_instances=n, initial_batch_cap=cap)
            for p, (n, cap) in pools.items()
        ),
        interactive_slo=slo or SLO(ttft_s=1.0, itl_s=0.1),
        fast_forward=fast_forward,
    )
    return Cluster(config, workload, np.random.default_rng(seed))
