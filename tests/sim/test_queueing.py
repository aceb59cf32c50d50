"""The simulator against queueing theory: M/D/1 waiting time and Little's law."""

from __future__ import annotations

import numpy as np
import pytest

from chiron_gym.sim import SLO, LinearPerfModel, Pool, RequestClass, Workload
from tests.conftest import make_cluster, small_spec

SERVICE_S = 1.0  # one iteration of a 1-token prompt with a 1-token output: exactly overhead_s
RHO = 0.7
N = 60_000


@pytest.fixture(scope="module")
def md1_run() -> tuple[object, list[int], float]:
    rng = np.random.default_rng(12345)
    rate = RHO / SERVICE_S
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=N))
    workload = Workload.from_columns(
        arrival_s=arrivals,
        klass=np.zeros(N, dtype=np.int8),
        prompt_tokens=np.ones(N, dtype=np.int64),
        output_tokens=np.ones(N, dtype=np.int64),
    )
    perf = LinearPerfModel(
        overhead_s=SERVICE_S, per_token_s=0.0, prefill_pair_s=0.0, decode_context_s=0.0
    )
    cluster = make_cluster(
        workload,
        {Pool.INTERACTIVE: (1, 1)},
        small_spec(perf_model=perf),
        slo=SLO(ttft_s=1e9, itl_s=1e9),
    )
    held: list[int] = []
    horizon = float(arrivals[-1])
    t = 0.0
    while t < horizon:
        t = min(t + 1.37, horizon)  # an irrational-ish step, not locked to the service time
        report = cluster.run_until(t)
        held.append(report.classes["interactive"].pending)
    cluster.run_until(horizon + 10 * SERVICE_S * N)  # drain
    return cluster, held, horizon


def test_md1_mean_wait_matches_pollaczek_khinchine(
    md1_run: tuple[object, list[int], float],
) -> None:
    """Cap 1, constant service D, Poisson arrivals: mean queueing delay is rho*D / (2(1-rho))."""
    cluster, _, _ = md1_run
    wait = cluster.admitted_s - cluster.workload.arrival_s  # type: ignore[attr-defined]
    expected = RHO * SERVICE_S / (2 * (1 - RHO))  # 1.1667 s
    assert np.all(np.isfinite(wait))
    assert abs(wait.mean() - expected) / expected < 0.05, (wait.mean(), expected)
    service = cluster.finish_s - cluster.admitted_s  # type: ignore[attr-defined]
    assert np.allclose(service, SERVICE_S)


def test_littles_law(md1_run: tuple[object, list[int], float]) -> None:
    """Time-average of requests held (sampled from window reports) equals lambda * mean sojourn."""
    cluster, held, horizon = md1_run
    w = cluster.workload  # type: ignore[attr-defined]
    sojourn = cluster.finish_s - w.arrival_s  # type: ignore[attr-defined]
    lam = len(w) / horizon
    expected_l = lam * sojourn.mean()  # M/D/1: rho + rho^2/(2(1-rho)) = 1.517
    observed_l = float(np.mean(held))
    assert abs(observed_l - expected_l) / expected_l < 0.05, (observed_l, expected_l)
    assert int(np.sum(w.klass == RequestClass.INTERACTIVE)) == N
