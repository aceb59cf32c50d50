"""``chiron profile measure`` without a server: the fit recovers a known engine, and the profile it
writes loads and reproduces the fitted iteration times through the simulator's form."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest

from chiron_gym import profiles
from chiron_gym.profiles.measure import (
    DecodePoint,
    EndpointFit,
    InterferencePoint,
    MeasureError,
    Measurements,
    PrefillPoint,
    build_profile,
    fit_endpoint,
)
from chiron_gym.profiles.probe import decode_points
from chiron_gym.sim import BatchComposition

TINY = {
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "hidden_size": 128,
    "intermediate_size": 256,
    "vocab_size": 320,
    "torch_dtype": "float32",
}
TRUE = EndpointFit(
    per_token_s=2e-5,
    prefill_const_s=8e-3,
    prefill_per_seq_s=1e-3,
    prefill_per_pair_s=3e-9,
    decode_seqs=(1, 2, 4, 8, 16),
    decode_base_s=(4e-3, 4.5e-3, 5e-3, 6e-3, 8e-3),
    decode_per_context_token_s=(1e-6, 9e-7, 8e-7, 7e-7, 6e-7),
)


def _measurements(noise: float, seed: int = 0) -> Measurements:
    rng = np.random.default_rng(seed)
    m = Measurements("http://127.0.0.1:1", "tiny", 1024)
    for b in TRUE.decode_seqs:
        for p in (32, 256, 640):
            for k in range(2, 90, 8):
                x = b * (p + k + 4)
                gap = TRUE.decode_s(b, x) * (1 + noise * rng.standard_normal())
                m.decode.append(DecodePoint(b, x, gap))
    for _ in range(3):
        for b in (1, 2, 4):
            for p in (16, 64, 128, 256, 512, 896):
                t = TRUE.prefill_s(b, p) * (1 + noise * rng.standard_normal())
                m.prefill.append(PrefillPoint(b, p, t))
    return m


def test_fit_recovers_the_engine_it_was_measured_on() -> None:
    m = _measurements(noise=0.0)
    fit = fit_endpoint(m.decode, m.prefill)
    for got, want in zip(
        (fit.per_token_s, fit.prefill_const_s, fit.prefill_per_seq_s, fit.prefill_per_pair_s),
        (TRUE.per_token_s, TRUE.prefill_const_s, TRUE.prefill_per_seq_s, TRUE.prefill_per_pair_s),
        strict=True,
    ):
        assert got == pytest.approx(want, rel=1e-6)
    assert fit.decode_base_s == pytest.approx(TRUE.decode_base_s, rel=1e-6)
    assert fit.decode_per_context_token_s == pytest.approx(
        TRUE.decode_per_context_token_s, rel=1e-6
    )


def test_measured_profile_loads_and_the_simulator_form_gives_the_measured_times(
    tmp_path: Path,
) -> None:
    m = _measurements(noise=0.02)
    doc = build_profile(m, name="cpu-tiny", config=TINY, config_source="config.json")
    path = tmp_path / "cpu-tiny.json"
    path.write_text(json.dumps(doc))
    prof = profiles.load(path)
    assert prof.model.layers == 2 and prof.model.kv_heads == 1 and prof.model.head_dim == 64
    assert prof.kv.bytes_per_token == 2 * 2 * 1 * 64 * 4
    mape = prof.mape_pct
    assert mape["decode_iteration"] < 5.0 and mape["prefill_ttft"] < 5.0  # 2% noise
    pm = prof.perf_model()
    for b in (1, 4, 16):
        ctx = [300] * b
        t = pm.iteration_time_s(BatchComposition.with_decodes([], [], ctx))
        assert t == pytest.approx(TRUE.decode_s(b, 300 * b), rel=0.05)
        base, slope, _ = pm.decode_cost(b, 300.0 * b)  # the fast-forward contract
        assert base + slope * 300 * b == pytest.approx(t, rel=1e-9)
    # a lone prefill plus the front-end latency is the time to first token it was fitted on
    assert prof.frontend_latency_s == pytest.approx(TRUE.frontend_latency_s, rel=0.1)
    assert prof.frontend_latency_s > 0.004  # 8 + 1 ms of TTFT, of which the engine is ~4 ms
    for p in (16, 128, 896):
        t = pm.iteration_time_s(BatchComposition.with_decodes([p], [0], []))
        assert t + prof.frontend_latency_s == pytest.approx(TRUE.prefill_s(1, p), rel=0.05)
        assert t < TRUE.prefill_s(1, p) - 0.004  # the engine is not charged the front end


def test_decode_points_count_tokens_of_merged_chunks() -> None:
    # two requests, 26 tokens each, 10 ms per token; the second gets tokens 2 at a time
    one = [(0.01 * k, k) for k in range(1, 27)]
    two = [(0.01 * k, k) for k in range(2, 27, 2)]
    pts = decode_points(2, 100, [one, two])
    assert [p.context_sum for p in pts] == [2 * (100 + k + 4) for k in (2, 10)]
    assert all(p.gap_s == pytest.approx(0.01) for p in pts)


def test_decode_points_widen_their_windows_when_a_busy_host_reads_in_bursts() -> None:
    """A stream read in bursts of 20 tokens (a starved client or API server: every chunk of a
    burst at one instant). Read chunk by chunk, 8-token windows time the bursts (they gave 25 ms
    for the engine's 10); counted at the bursts' ends, no 8-token window has timing, so the
    windows widen until they span two bursts, and 10 ms per token comes back. A whole stream
    read at once has none at any width. (A busy-host make test once refused: no decode points
    to fit.)"""
    burst = 20
    bursty = [(0.01 * burst * math.ceil(k / burst), k) for k in range(1, 97)]
    pts = decode_points(1, 32, [bursty, bursty])
    assert pts and all(p.gap_s == pytest.approx(0.01, rel=0.25) for p in pts)
    assert decode_points(1, 32, [[(0.5, k) for k in range(1, 97)]]) == []
    # two bursts: only the window from token 2 to the end spans both, and it counts
    two = [(0.5 if k <= 48 else 1.0, k) for k in range(1, 97)]
    (whole,) = decode_points(1, 32, [two])
    assert whole.gap_s == pytest.approx(0.5 / 48)
    # windows that have timing are unchanged: the old width, the old points
    steady = [(0.01 * k, k) for k in range(1, 97)]
    assert [p.context_sum for p in decode_points(1, 32, [steady])][:2] == [32 + 2 + 4, 32 + 10 + 4]


def test_too_few_points_is_a_clear_error() -> None:
    with pytest.raises(MeasureError, match="prefill points"):
        fit_endpoint([DecodePoint(1, 10.0, 0.01)], [PrefillPoint(1, 16, 0.02)])


def test_model_shape_errors_name_the_file() -> None:
    bad = dict(TINY)
    del bad["hidden_size"]
    with pytest.raises(MeasureError, match=r"models/tiny/config\.json.*hidden_size"):
        build_profile(
            _measurements(0.0), name="x", config=bad, config_source="models/tiny/config.json"
        )


def test_interference_probe_charges_each_arrival_its_engine_time() -> None:
    # an engine of 4 ms iterations that spends 5 ms on each of 20 arrivals per second runs
    # N iterations in T = 4 ms * N + 0.1 T, so the background gap is 4 ms / 0.9
    point = InterferencePoint(20.0, 128, quiet_gap_s=0.004, busy_gap_s=0.004 / 0.9)
    assert point.engine_s_per_arrival == pytest.approx(0.005)
    m = _measurements(noise=0.0)
    fit = fit_endpoint(m.decode, m.prefill, [point])
    prompt_cost = TRUE.per_token_s * 128 + TRUE.prefill_per_pair_s * 128 * 129 / 2
    assert fit.engine_per_seq_s == pytest.approx(0.005 - prompt_cost, rel=1e-6)
    # the front end keeps only what the engine does not pay
    assert fit.frontend_latency_s == pytest.approx(
        TRUE.frontend_latency_s - fit.engine_per_seq_s, rel=1e-6
    )


def test_a_degenerate_interference_timing_is_dropped_with_a_warning_not_a_crash() -> None:
    """A busy host can deliver a probe's chunks in one burst, so a measured gap comes back 0
    (``chiron profile measure`` once died of ZeroDivisionError there): the point is dropped
    with a warning naming it, and the fit uses the points that remain."""
    from chiron_gym.profiles.probe import _gap_between

    assert np.isnan(_gap_between([(1.0, 5), (1.0, 9)], 0.0, 2.0))  # two chunks, one instant
    good = InterferencePoint(20.0, 128, quiet_gap_s=0.004, busy_gap_s=0.004 / 0.9)
    for bad in (
        InterferencePoint(10.0, 128, quiet_gap_s=0.004, busy_gap_s=0.0),
        InterferencePoint(10.0, 128, quiet_gap_s=0.0, busy_gap_s=0.004),
        InterferencePoint(10.0, 128, quiet_gap_s=float("nan"), busy_gap_s=0.004),
    ):
        assert np.isnan(bad.engine_s_per_arrival)
        m = _measurements(noise=0.0)
        with pytest.warns(UserWarning, match=r"interference probe at 10 arrivals/s dropped"):
            fit = fit_endpoint(m.decode, m.prefill, [bad, good])
        assert fit == fit_endpoint(m.decode, m.prefill, [good])
        with pytest.warns(UserWarning, match="fitting on the 0 that are"):
            alone = fit_endpoint(m.decode, m.prefill, [bad])
        assert alone.engine_per_seq_s == 0.0


def test_decode_and_prefill_timings_that_are_not_positive_are_dropped_with_a_warning() -> None:
    m = _measurements(noise=0.0)
    bad_d = [DecodePoint(4, 1000.0, 0.0), DecodePoint(4, 2000.0, float("nan"))]
    bad_p = [
        PrefillPoint(1, 64, 0.0),
        PrefillPoint(2, 64, -1e-3),
        PrefillPoint(1, 16, float("inf")),
    ]
    with pytest.warns(UserWarning) as caught:
        fit = fit_endpoint(m.decode + bad_d, m.prefill + bad_p)
    assert [str(w.message).split(" samples")[0] for w in caught if w.category is UserWarning] == [
        "2 decode gap",
        "3 prefill time to first token",
    ]
    assert fit == fit_endpoint(m.decode, m.prefill)
    with pytest.raises(MeasureError, match="no decode points"), pytest.warns(UserWarning):
        fit_endpoint(bad_d, m.prefill)


CACHE_CONFIG = (
    "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
    "# TYPE vllm:cache_config_info gauge\n"
    'vllm:cache_config_info{block_size="16",cache_dtype="auto",num_gpu_blocks="2048"} 1.0\n'
)


@pytest.mark.parametrize(
    ("status", "text", "expected"),
    [(200, CACHE_CONFIG, (2048, 16)), (200, "# nothing\n", (None, None)), (404, "", (None, None))],
)
def test_kv_capacity_is_read_from_the_metrics_endpoint(
    status: int, text: str, expected: tuple[int | None, int | None]
) -> None:
    """The probe reads ``vllm:cache_config_info`` through the real backend's client (its
    ``/metrics`` call); no gauge, or no answer, leaves the capacity to ``--memory-bytes``."""
    from chiron_gym.profiles.probe import _cache_config
    from tests.test_http_lean import with_server

    body = text.encode()
    response = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
    got, request = asyncio.run(with_server(response, 7, _cache_config))
    assert got == expected
    assert request.startswith(b"GET /metrics HTTP/1.1")


def test_degenerate_held_out_timings_never_make_a_profile_that_fails_validation(
    tmp_path: Path,
) -> None:
    """A busy host's zero gaps (NaN) among the held-out points made the held-out error NaN,
    and ``chiron profile measure`` then refused its own profile (a clean make test failed on
    a loaded host). Degenerate timings are left out of the error as out of the fit; with no
    usable held-out point the error is the fitted points', said so."""
    m = _measurements(noise=0.02)
    for i in range(0, len(m.decode), 3):
        m.decode[i] = DecodePoint(m.decode[i].batch, m.decode[i].context_sum, math.nan)
    with pytest.warns(UserWarning, match="dropped"):
        doc = build_profile(m, name="cpu-tiny", config=TINY, config_source="config.json")
    path = tmp_path / "cpu-tiny.json"
    path.write_text(json.dumps(doc))
    assert all(math.isfinite(v) for v in profiles.load(path).mape_pct.values())
    for i in range(len(m.decode)):  # no decode timing left anywhere: refused, not NaN
        m.decode[i] = DecodePoint(m.decode[i].batch, m.decode[i].context_sum, math.nan)
    with pytest.raises(MeasureError, match="no decode points to fit"):
        build_profile(m, name="cpu-tiny", config=TINY, config_source="config.json")
