"""``chiron profile measure``'s probe against a fake OpenAI-compatible server with degenerate
timings: a stream delivered in one burst (zero gaps), samples that are all the same, and a server
that stalls. The probe never crashes on them: it retries, drops a probe with a warning naming it,
fits on what remains, or refuses with a ``MeasureError`` that says why.

The fake server (``tests/fake_vllm.py``) streams tokens as vLLM does; nothing here asserts a
timing, only what the probe made of it.
"""

from __future__ import annotations

import pytest

from chiron_gym.profiles.measure import build_profile
from chiron_gym.profiles.probe import MeasureError, ProbePlan, probe
from tests.fake_vllm import fake_server
from tests.profiles.test_measure import TINY

PLAN = ProbePlan(
    decode_batches=(1, 4),
    decode_prompts=(32, 256),
    decode_output=48,
    prefill_batches=(1, 2),
    prefill_prompts=(16, 64, 128, 256),
    repeats=2,
    interference_rates=(20.0,),
    stall_s=2.0,
    retries=1,
)


def _measure(url: str) -> dict[str, object]:
    m = probe(url, PLAN, show_progress=False)
    return build_profile(m, name="fake", config=TINY, config_source="test")


def test_zero_gaps_on_some_streams_are_dropped_and_the_rest_fitted() -> None:
    # every third request arrives in one burst: its decode gaps are zero and measure nothing
    def some_burst(serial: int, prompt: int, out: int) -> str:
        return "burst" if serial % 3 == 0 else "steady"

    with fake_server(some_burst) as url:
        doc = _measure(url)
    assert doc["validation"]["mape_pct"]["decode_iteration"] >= 0


def test_a_server_that_only_bursts_is_refused_with_the_reason() -> None:
    with fake_server(lambda s, p, o: "burst") as url, pytest.raises(MeasureError, match="decode"):
        _measure(url)


def test_a_server_whose_streams_all_come_whole_is_timed_by_its_own_clock() -> None:
    """Every stream in one read (a busy host: seen in make test under load) leaves no client
    timing; vLLM's inter-token-latency histogram, read before and after each decode probe,
    gives the engine's own gap, said in a warning."""
    with (
        fake_server(lambda s, p, o: "burst", per_token_s=0.004, itl_metrics=True) as url,
        pytest.warns(UserWarning, match="vLLM's own mean inter-token latency") as caught,
    ):
        m = probe(url, PLAN, show_progress=False)
    assert all(w.filename.endswith("probe.py") for w in caught)  # its line, not asyncio's
    assert len(m.decode) == 4  # one per decode probe
    assert all(p.gap_s == pytest.approx(0.004) for p in m.decode)
    doc = build_profile(m, name="fake", config=TINY, config_source="test")
    assert doc["validation"]["mape_pct"]["decode_iteration"] >= 0


def test_identical_samples_fit_a_flat_engine() -> None:
    """The same time per token whatever the batch, the same first token whatever the prompt: a
    flat fit, positive, and no error."""
    with fake_server(lambda s, p, o: "steady") as url:
        m = probe(url, PLAN, show_progress=False)
    doc = build_profile(m, name="fake", config=TINY, config_source="test")
    assert {p.batch for p in m.decode} == {1, 4}
    assert doc["validation"]["mape_pct"]["decode_iteration"] >= 0


def test_a_stalled_probe_is_retried_then_dropped_with_a_warning_naming_it() -> None:
    def stall_long_decodes(serial: int, prompt: int, out: int) -> str:
        return "stall" if (prompt, out) == (256, PLAN.decode_output) else "steady"

    with fake_server(stall_long_decodes) as url, pytest.warns(UserWarning) as caught:
        m = probe(url, PLAN, show_progress=False)
    ours = [w for w in caught if w.category is UserWarning]  # not a stray ResourceWarning
    dropped = [str(w.message).split(" dropped")[0] for w in ours]
    assert dropped == [f"decode probe ({b} x 256-token prompts)" for b in PLAN.decode_batches]
    assert all("after 2 tries" in str(w.message) for w in ours)
    assert m.decode and {round(p.context_sum / p.batch) for p in m.decode} < set(range(32, 90))
    build_profile(m, name="fake", config=TINY, config_source="test")


def test_a_server_that_stops_answering_is_refused_not_waited_on_forever() -> None:
    with (
        fake_server(lambda s, p, o: "stall") as url,
        pytest.raises(MeasureError, match="stopped answering"),
        pytest.warns(UserWarning, match="warm-up"),
    ):
        probe(url, PLAN, show_progress=False)
