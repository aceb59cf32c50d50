"""Trace readers: real files, round trips through our writers, clear errors, transforms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chiron_gym.workload.trace import (
    ClassAssignment,
    ColumnMap,
    Trace,
    TraceError,
    detect_format,
    read_servegen,
    read_trace,
    stats,
    transform,
    write_servegen,
    write_trace,
)
from tests.conftest import require_data


def synthetic(n: int = 500, seed: int = 0, label: bool = False) -> Trace:
    rng = np.random.default_rng(seed)
    t = np.concatenate([[0.0], np.cumsum(rng.exponential(0.5, n - 1))])
    labels = tuple(rng.choice(["Conversation log", "API log"], n)) if label else None
    return Trace(t, rng.integers(1, 5000, n), rng.integers(1, 900, n), labels)


@pytest.mark.parametrize("fmt", ["azure", "mooncake", "burstgpt", "generic"])
def test_round_trip_through_our_writer(tmp_path: Path, fmt: str) -> None:
    """Write, detect (or map) and read back: same requests, times to the format's resolution."""
    trace = synthetic(label=fmt in ("burstgpt", "generic"))
    p = write_trace(tmp_path / f"t.{fmt}", trace, fmt)
    columns = ColumnMap.parse("time=time_s,prompt=prompt,output=output,label=label")
    back = read_trace(
        p, None if fmt != "generic" else "generic", columns if fmt == "generic" else None
    )
    if fmt != "generic":
        assert detect_format(p) == fmt
    tol = {"azure": 1e-6, "mooncake": 1e-3, "burstgpt": 1e-9, "generic": 1e-9}[fmt]
    np.testing.assert_allclose(back.arrival_s, trace.arrival_s, atol=tol)
    np.testing.assert_array_equal(back.prompt_tokens, trace.prompt_tokens)
    np.testing.assert_array_equal(back.output_tokens, trace.output_tokens)
    if fmt in ("burstgpt", "generic"):
        assert back.label == trace.label


def test_servegen_rate_file_round_trip(tmp_path: Path) -> None:
    from chiron_gym.workload.arrivals import RateCurve

    curve = RateCurve((0.0, 600.0, 1200.0), (2.5, 0.0, 7.0), (1.5, 1.0, 3.0))
    back = read_servegen(write_servegen(tmp_path / "chunk-1-trace.csv", curve))
    assert back.starts_s == curve.starts_s and back.rates_per_s == curve.rates_per_s
    assert back.cvs == (1.5, 1.0, 3.0)


def test_servegen_time_scale_plays_the_same_requests_faster(tmp_path: Path) -> None:
    """``time_scale`` stretches a ServeGen curve's clock as a trace replay's: the windows start
    at times x ``time_scale`` and carry the same requests, so a quarter of the time sees the same
    count (rates x 4); ``rate_scale`` still multiplies the count."""
    from chiron_gym.workload.arrivals import RateCurve
    from chiron_gym.workload.sources import ServeGen

    curve = RateCurve((0.0, 600.0, 1200.0), (4.0, 0.0, 8.0), (1.0, 1.0, 2.0))
    path = str(write_servegen(tmp_path / "chunk-1-trace.csv", curve))
    real = ServeGen(path=path).times(np.random.default_rng(0), 1800.0)
    fast = ServeGen(path=path, time_scale=0.25).times(np.random.default_rng(0), 450.0)
    assert fast.max() < 450.0
    # nothing in the silent window [600, 1200) s of the real clock, [150, 300) s of the fast one
    assert not np.any((real >= 600.0) & (real < 1200.0))
    assert not np.any((fast >= 150.0) & (fast < 300.0))
    n = 4.0 * 600 + 8.0 * 600  # expected requests in both: 7,200
    assert abs(len(real) - n) < 0.1 * n and abs(len(fast) - n) < 0.1 * n
    assert ServeGen(path=path, time_scale=0.25).peak_rate() == 32.0
    half = ServeGen(path=path, time_scale=0.25, rate_scale=0.5).times(
        np.random.default_rng(1), 450.0
    )
    assert abs(len(half) - n / 2) < 0.1 * n / 2
    # the default clock is the file's: identical draws with and without time_scale = 1
    again = ServeGen(path=path, time_scale=1.0).times(np.random.default_rng(0), 1800.0)
    np.testing.assert_array_equal(real, again)


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,12,x\n",
            "azure",
            r":2: column 'GeneratedTokens' = 'x': expected a non-negative integer",
        ),
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17,12,3\n",
            "azure",
            r":2: column 'TIMESTAMP' = '2023-11-16 18:17': expected a time like",
        ),
        (
            '{"timestamp": 0, "input_length": 5, "output_length": 2}\n{"timestamp": 1,\n',
            "mooncake",
            r":2: not a JSON object",
        ),
        ('{"timestamp": 0, "input_length": 5}\n', "mooncake", r":1: missing field 'output_length'"),
        (
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "1.0,m,-3,2,5,x\n",
            "burstgpt",
            r":2: column 'Request tokens' = '-3': expected >= 0",
        ),
        ("a,b\n1,2\n", "azure", r":1: header \['a', 'b'\] lacks column"),
    ],
)
def test_malformed_rows_name_file_line_and_expectation(
    tmp_path: Path, text: str, fmt: str, expected: str
) -> None:
    p = tmp_path / "bad.trace"
    p.write_text(text)
    with pytest.raises(TraceError, match=r"bad\.trace" + expected):
        read_trace(p, fmt)


def test_undetectable_format_says_what_to_do(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("t,in,out\n0,1,2\n")
    with pytest.raises(TraceError, match="cannot tell the trace format"):
        read_trace(p)
    t = read_trace(p, "generic", ColumnMap.parse("time=t,prompt=in,output=out"))
    assert len(t) == 1


def test_thinning_replication_slicing_and_time_scale() -> None:
    base = synthetic(n=20_000, seed=1)
    rng = np.random.default_rng(0)
    half = transform(base, rng, rate_scale=0.5)
    assert abs(len(half) / len(base) - 0.5) < 0.02
    more = transform(base, rng, rate_scale=2.5)
    assert abs(len(more) / len(base) - 2.5) < 0.03 and np.all(np.diff(more.arrival_s) >= 0)
    sl = transform(base, rng, start_s=100.0, end_s=200.0, time_scale=2.0)
    assert sl.arrival_s.min() >= 0 and sl.arrival_s.max() < 200.0
    assert len(sl) == np.sum((base.arrival_s >= 100) & (base.arrival_s < 200))


def test_class_assignment_by_fraction_rule_and_label() -> None:
    t = synthetic(n=10_000, label=True)
    rng = np.random.default_rng(2)
    assert abs(ClassAssignment(batch_fraction=0.3).is_batch(t, rng).mean() - 0.3) < 0.02
    rule = ClassAssignment(prompt_at_least=4000).is_batch(t, rng)
    np.testing.assert_array_equal(rule, t.prompt_tokens >= 4000)
    by_label = ClassAssignment(batch_labels=("API log",)).is_batch(t, rng)
    assert t.label is not None
    np.testing.assert_array_equal(by_label, np.array([lab == "API log" for lab in t.label]))


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("rel", "count", "rate", "cv"),
    [
        ("azure-llm-2023/AzureLLMInferenceTrace_code.csv", 8819, 2.57, 13.2),
        ("azure-llm-2023/AzureLLMInferenceTrace_conv.csv", 19366, 5.53, 1.09),
        ("mooncake/traces/synthetic_trace.jsonl", 3993, 3.91, None),
    ],
)
def test_real_traces(rel: str, count: int, rate: float, cv: float | None) -> None:
    """The shared traces read completely, with the statistics their README states."""
    s = stats(read_trace(require_data(rel)))
    assert s["requests"] == count
    assert abs(s["mean_rate_per_s"] - rate) < 0.01
    if cv is not None:
        assert abs(s["interarrival_cv"] - cv) < 0.06  # the README rounds to 3 digits


@pytest.mark.real_data
def test_real_servegen_rate_file() -> None:
    folder = require_data("servegen/language/m-large")
    curve = read_servegen(sorted(folder.glob("chunk-*-trace.csv"))[0])
    assert len(curve.starts_s) == 2016 and curve.starts_s[1] == 600.0


@pytest.mark.real_data
def test_length_tables_regenerate_byte_for_byte(tmp_path: Path) -> None:
    from chiron_gym.cli import main

    data = require_data("azure-llm-2023").parent
    assert main(["trace", "tables", "--data", str(data), "--out", str(tmp_path)]) == 0
    shipped = Path(__file__).resolve().parents[2] / "chiron_gym" / "workload" / "tables"
    for p in sorted(tmp_path.glob("*.json")):
        assert p.read_text() == (shipped / p.name).read_text(), p.name
        assert json.loads(p.read_text())["source"]["requests"] > 1000


def test_trace_stats_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chiron_gym.cli import main

    p = write_trace(tmp_path / "t.jsonl", synthetic(), "mooncake")
    assert main(["trace", "stats", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["requests"] == 500 and set(out["prompt_tokens"]) == {"mean", "median", "p99"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    assert main(["trace", "stats", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_prefix_block_reuse_counts_blocks_seen_before(tmp_path: Path) -> None:
    """Mooncake's hash_ids are kept per request (through slicing and sorting); the reuse is the
    share of prompt blocks seen earlier in arrival order."""
    rows = [
        {"timestamp": 2000, "input_length": 1536, "output_length": 5, "hash_ids": [1, 2, 4]},
        {"timestamp": 0, "input_length": 1024, "output_length": 5, "hash_ids": [1, 2]},
        {"timestamp": 1000, "input_length": 1536, "output_length": 5, "hash_ids": [1, 2, 3]},
        {"timestamp": 3000, "input_length": 512, "output_length": 5, "hash_ids": [9]},
    ]
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = read_trace(p)
    assert t.blocks == ((1, 2), (1, 2, 3), (1, 2, 4), (9,))  # sorted by arrival
    # 9 blocks: [1, 2] new; [1, 2] seen, 3 new; [1, 2] seen, 4 new; 9 new -> 4 of 9 seen before
    assert stats(t)["prefix_block_reuse"] == pytest.approx(4 / 9)
    assert t.take(np.array([3, 0])).blocks == ((9,), (1, 2))
    p.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "x"}\n')
    with pytest.raises(TraceError, match=r":1: hash_ids: expected a list of integers"):
        read_trace(p)


@pytest.mark.real_data
def test_mooncake_prefix_reuse() -> None:
    """The shared Mooncake trace: 64% of its prompt blocks repeat one seen before (its README)."""
    s = stats(read_trace(require_data("mooncake/traces/synthetic_trace.jsonl")))
    assert s["prefix_block_reuse"] == pytest.approx(0.6396, abs=1e-4)
    assert "prefix_block_reuse" not in stats(
        read_trace(require_data("azure-llm-2023/AzureLLMInferenceTrace_code.csv"))
    )
