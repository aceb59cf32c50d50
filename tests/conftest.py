"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import numpy.typing as npt
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
# where ``data:`` paths of scenario files point too (chiron_gym.scenario.data_root)
SHARED_DATA = Path(os.environ.get("CHIRON_DATA") or REPO.parent / "shared" / "data")


def skip_unless_required(message: str, variable: str) -> NoReturn:
    """Skip with ``message``; fail instead when ``$variable`` is 1 (``make test`` sets the
    CHIRON_REQUIRE_* variables, so CI never passes by skipping real data, vLLM or Ray)."""
    if os.environ.get(variable) == "1":
        pytest.fail(f"{message}; {variable}=1 makes this a failure")
    pytest.skip(message)


def require_data(relative: str) -> Path:
    """Path under ../shared/data; skip when absent, fail when CHIRON_REQUIRE_DATA=1."""
    path = SHARED_DATA / relative
    if not path.exists():
        skip_unless_required(
            f"real data {path} is absent (set up ../shared/data beside the repository)",
            "CHIRON_REQUIRE_DATA",
        )
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
    prefix_routing: bool = False,
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
        prefix_routing=prefix_routing,
    )
    return Cluster(config, workload, np.random.default_rng(seed))


def burst(prompt_tokens: int, output_tokens: npt.ArrayLike) -> Workload:
    """Interactive requests all arriving at time 0, one per entry of ``output_tokens``."""
    out = np.asarray(output_tokens, dtype=np.int64).reshape(-1)
    n = len(out)
    return Workload.from_columns(
        arrival_s=np.zeros(n),
        klass=np.zeros(n),
        prompt_tokens=np.full(n, prompt_tokens),
        output_tokens=out,
    )
