"""The ledger counts a request once, whoever reports it twice (issue 42's first defect)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chiron_gym.sim.ledger import Ledger
from chiron_gym.sim.request import Outcome, Workload


def _ledger(n: int) -> Ledger:
    w = Workload.from_columns(
        arrival_s=np.zeros(n), klass=np.zeros(n, dtype=np.int8),
        prompt_tokens=np.full(n, 10), output_tokens=np.full(n, 5),
    )  # fmt: skip
    ledger = Ledger(w)
    for i in range(n):
        ledger.arrive(i, 0)
    return ledger


def test_a_request_heard_of_twice_counts_once_in_the_window_latencies() -> None:
    """The real backend may hear of a request twice (a retried request whose first server
    answered after all): its outcome and its latencies are the first report's."""
    ledger = _ledger(2)
    ledger.finish(0, 0, True, 5, first_token_s=1.0, finish_s=2.0, ttft_s=1.0, itl_s=0.25)
    ledger.finish(0, 0, False, 5, first_token_s=9.0, finish_s=10.0, ttft_s=9.0, itl_s=0.25)
    ledger.finish(1, 0, True, 5, first_token_s=2.0, finish_s=3.0, ttft_s=2.0, itl_s=0.25)
    report = ledger.close_window(10.0, [0, 0], [0, 0], {}, 0.0).classes["interactive"]
    assert (report.met, report.late) == (2, 0)
    assert report.ttft_s == pytest.approx((1.5, 1.95, 1.99))  # of [1, 2]: the 9 s is not there
    assert list(ledger.outcome[:2]) == [Outcome.MET, Outcome.MET]


def test_summary_latencies_are_in_wall_seconds_when_timestamps_are_scaled() -> None:
    ledger = _ledger(1)
    ledger.finish(0, 0, True, 5, first_token_s=0.5, finish_s=1.5, ttft_s=1.0, itl_s=0.5)
    plain = ledger.summary([0, 0], None)["interactive"]
    scaled = ledger.summary([0, 0], None, latency_scale=2.0)["interactive"]
    assert plain.ttft_s[0] == 0.5 and scaled.ttft_s[0] == 1.0
    assert scaled.tpot_mean_s == pytest.approx(2 * plain.tpot_mean_s)
    assert scaled.output_tokens_per_s == pytest.approx(plain.output_tokens_per_s / 2)
    assert not math.isnan(scaled.output_tokens_per_s)
