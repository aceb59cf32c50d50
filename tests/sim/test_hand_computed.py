"""Three requests through one instance with a known performance model: exact timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from chiron_gym.sim import LinearPerfModel, Outcome, Pool, Workload
from tests.conftest import make_cluster, small_spec

# Iteration time = 10 ms + 1 ms per token computed; budget 100 tokens; cap 2.
#   t=0      A (prompt 50, out 3) starts: prefill 50 tokens          -> ends 0.060, A's 1st token
#   t=0.005  B (prompt 120, out 2) routed to the instance (load 1 < cap 2), waits for the iteration
#   t=0.020  C (prompt 10, out 1) finds no room (A running, B waiting): global queue
#   t=0.060  A decodes (1) + B's first chunk (99)                    -> ends 0.170
#   t=0.170  A decodes (1) + B's last chunk (21)              -> ends 0.202: A done, B 1st token
#   t=0.202  C pulled; B decodes (1) + C prefill (10)                 -> ends 0.223: B and C done
EXPECTED = {
    # request: (admitted, first token, finish)
    0: (0.0, 0.060, 0.202),
    1: (0.060, 0.202, 0.223),
    2: (0.202, 0.223, 0.223),
}


@pytest.mark.parametrize("fast_forward", [True, False])
def test_three_requests_exact_timestamps(fast_forward: bool) -> None:
    """Chunked prefill, routing to a waiting slot, the global queue and pulls, exactly."""
    workload = Workload.from_columns(
        arrival_s=[0.0, 0.005, 0.020],
        klass=[0, 0, 0],
        prompt_tokens=[50, 120, 10],
        output_tokens=[3, 2, 1],
    )
    perf = LinearPerfModel(
        overhead_s=0.010, per_token_s=0.001, prefill_pair_s=0.0, decode_context_s=0.0
    )
    spec = small_spec(perf_model=perf, max_num_batched_tokens=100)
    cluster = make_cluster(workload, {Pool.INTERACTIVE: (1, 2)}, spec, fast_forward=fast_forward)
    cluster.run_until(1.0)
    for idx, (admitted, first, finish) in EXPECTED.items():
        assert cluster.admitted_s[idx] == pytest.approx(admitted, abs=1e-12)
        assert cluster.first_token_s[idx] == pytest.approx(first, abs=1e-12)
        assert cluster.finish_s[idx] == pytest.approx(finish, abs=1e-12)
    assert np.all(cluster.outcome == Outcome.MET)
    # GPU-seconds: one ready instance billed for the whole second.
    assert cluster.gpu_seconds() == pytest.approx(1.0)
