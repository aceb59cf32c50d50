"""Fast-forward (closed-form decode stretches) equals the per-iteration reference mode."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chiron_gym.sim import Cluster
from tests.sim.strategies import random_case, run_case


def assert_same_timestamps(a: Cluster, b: Cluster) -> None:
    """Per-request outcomes equal, timestamps equal to a relative 1e-9."""
    assert a.num_arrived == b.num_arrived
    np.testing.assert_array_equal(a.outcome, b.outcome)
    np.testing.assert_array_equal(a.preemptions, b.preemptions)
    for name in ("admitted_s", "first_token_s", "finish_s"):
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), rtol=1e-9, atol=0, err_msg=name
        )


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1))
@example(100902)  # a swap on a mixed instance that became due mid-stretch
def test_fast_forward_matches_reference(seed: int) -> None:
    """Random workloads with preemption, swaps and scaling: same per-request timestamps."""
    case = random_case(seed)
    assert_same_timestamps(run_case(case, fast_forward=True), run_case(case, fast_forward=False))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fast_forward_matches_reference_with_prefix_caching(seed: int) -> None:
    """The same with shared prompt prefixes and prefix caching on: same timestamps, and the
    same prefix-cache hits on every instance."""
    case = random_case(seed, prefix=True)
    ff = run_case(case, fast_forward=True)
    ref = run_case(case, fast_forward=False)
    assert_same_timestamps(ff, ref)
    assert [i.prefix_hits() for i in ff.instances] == [i.prefix_hits() for i in ref.instances]
    assert [i.cache.evicted_units for i in ff.instances if i.cache] == [
        i.cache.evicted_units for i in ref.instances if i.cache
    ]


def test_fast_forward_saves_events() -> None:
    """On a decode-heavy case the stretches replace most per-iteration events."""
    from chiron_gym.sim import Pool
    from tests.conftest import burst, make_cluster

    n = 32
    workload = burst(100, np.arange(200, 200 + 50 * n, 50))
    ff = make_cluster(workload, {Pool.INTERACTIVE: (1, 64)}, fast_forward=True)
    ref = make_cluster(workload, {Pool.INTERACTIVE: (1, 64)}, fast_forward=False)
    pushed = []
    for cluster in (ff, ref):
        cluster.run_until(10_000.0)
        pushed.append(next(cluster.events._counter))
    assert_same_timestamps(ff, ref)
    assert pushed[0] * 20 < pushed[1], pushed
