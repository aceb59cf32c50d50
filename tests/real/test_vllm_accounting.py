"""The real backend's accounting where failures land (issue 42's defects), against the fake
server of ``tests/fake_vllm.py`` (no vLLM needed): a request the failed server requeued is not
requeued again when its own stream then fails; a requeued request whose stream finished after
all is not sent again; summary latencies are in wall seconds whatever ``time_scale``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from chiron_gym.backends.vllm import VllmBackend
from chiron_gym.backends.vllm_servers import ServerState
from chiron_gym.scenario import load
from chiron_gym.sim.request import Outcome
from tests.fake_vllm import fake_server

SCENARIO = """
description = "four interactive requests at t = 0 on adopted endpoints"
horizon_s = 4.0
decision_interval_s = 2.0
[slo.interactive]
ttft_s = 5.0
itl_s = 1.0
[instance]
kv_capacity_blocks = 512
max_batch_cap = 8
[pools.interactive]
initial = {n}
min = 1
max = {n}
batch_cap = 8
[[workload]]
class = "interactive"
arrival = {{ kind = "bulk", count = 4, first_s = 0.0 }}
prompt = {{ kind = "lognormal", mean = 16, cv = 0.1, low = 8, high = 32 }}
output = {{ kind = "lognormal", mean = 4, cv = 0.1, low = 3, high = 6 }}
"""


@pytest.fixture
def backend_on(tmp_path: Path) -> Iterator[Callable[..., VllmBackend]]:
    """``make(behaviours, time_scale)``: a reset backend adopting one fake server per
    behaviour."""
    stack = ExitStack()
    made: list[VllmBackend] = []

    def make(behaviours: list[str], time_scale: float = 1.0) -> VllmBackend:
        urls = [stack.enter_context(fake_server(lambda s, p, o, b=b: b)) for b in behaviours]
        path = tmp_path / "s.toml"
        path.write_text(SCENARIO.format(n=len(urls)))
        b = VllmBackend(load(path), endpoints={"interactive": urls}, time_scale=time_scale)
        b.reset(0)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
    stack.close()


def test_a_request_requeued_by_its_failed_server_is_not_requeued_again(
    backend_on: Callable[..., VllmBackend],
) -> None:
    backend = backend_on(["error"])
    s = backend.servers[0]
    backend.ledger.arrive(0, 0)
    s.in_flight.add(0)
    backend._fail(s, "test: the server failed")  # requeues request 0 (its first retry)
    assert list(backend.queues[0]) == [0]
    assert backend._loop is not None
    backend._loop.run_until_complete(backend._send(s, 0))  # then its stream fails too
    assert list(backend.queues[0]) == [0]
    assert backend.ledger.outcome[0] == Outcome.PENDING  # not rejected: one retry was used


def test_a_requeued_request_whose_stream_finished_after_all_is_not_sent_again(
    backend_on: Callable[..., VllmBackend],
) -> None:
    backend = backend_on(["steady", "steady"])
    first, second = backend.servers
    backend.ledger.arrive(0, 0)
    first.in_flight.add(0)
    backend._fail(first, "test: the server failed")
    assert first.state == ServerState.FAILED and list(backend.queues[0]) == [0]
    assert backend._loop is not None
    backend._loop.run_until_complete(backend._send(first, 0))  # it answered after all
    assert backend.ledger.outcome[0] == Outcome.MET
    assert not backend.queues[0] and not second.in_flight  # the queued copy was dropped


def test_summary_latencies_are_wall_seconds_as_the_window_reports_are(
    backend_on: Callable[..., VllmBackend],
) -> None:
    backend = backend_on(["steady"], time_scale=0.5)
    window = backend.advance(2.0)
    backend.run(4.0)
    ttft_window = window.classes["interactive"].ttft_s
    summary = backend.summary()["interactive"]
    assert summary.met == 4
    # the same four requests; both in wall seconds (the summary was in scenario seconds: twice)
    assert summary.ttft_s == pytest.approx(ttft_window, rel=1e-9)
