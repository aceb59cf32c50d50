"""The reports' percentiles are numpy's linear percentiles, bit for bit."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym.sim.report import PERCENTILES, percentiles

finite = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(finite, st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5])), min_size=1))
def test_percentiles_equal_numpy_bit_for_bit(values: list[float]) -> None:
    """Lists and arrays, with ties and repeated values, against ``np.percentile``."""
    expected = tuple(float(x) for x in np.percentile(np.asarray(values), PERCENTILES))
    for got in (percentiles(values), percentiles(np.asarray(values))):
        assert [x.hex() for x in got] == [x.hex() for x in expected]


def test_percentiles_of_nothing_and_of_nan() -> None:
    assert all(math.isnan(x) for x in percentiles([]))
    assert all(math.isnan(x) for x in percentiles([1.0, math.nan, 2.0]))
    assert all(math.isnan(x) for x in percentiles(np.array([1.0, math.nan])))
