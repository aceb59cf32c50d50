"""Parts of the real backend that need no server: metrics parsing, configuration errors."""

from __future__ import annotations

import pytest

from chiron_gym.backends import make_backend
from chiron_gym.backends.vllm import ServerConfig, parse_metrics
from chiron_gym.scenario import load

METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.125
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="tiny"} 4096.0
vllm:generation_tokens_created{engine="0",model_name="tiny"} 1.7e9
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="tiny"} 2.0
"""


def test_parse_metrics_reads_the_vllm_series() -> None:
    m = parse_metrics(METRICS)
    assert m == {
        "running": 3.0,
        "waiting": 0.0,
        "kv_usage": 0.125,
        "generation_tokens": 4096.0,
        "preemptions": 2.0,
    }


HISTOGRAMS = """\
# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="tiny"} 10.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 40.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="tiny"} 40.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="tiny"} 0.8
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.6
"""


def test_parse_metrics_reads_latency_histograms_as_sum_and_count() -> None:
    """Chiron's per-instance local loop reads ITL and TTFT as histogram sum / count (buckets
    are not summed in)."""
    m = parse_metrics(METRICS + HISTOGRAMS)
    assert m["itl_count"] == 40.0 and m["itl_sum"] == pytest.approx(0.8)
    assert m["ttft_count"] == 4.0 and m["ttft_sum"] == pytest.approx(0.6)
    assert m["running"] == 3.0


def test_backend_needs_servers_or_endpoints() -> None:
    with pytest.raises(ValueError, match="needs a ServerConfig"):
        make_backend("vllm", load("default"))
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        make_backend("gpu", load("default"))


def test_server_argv_has_no_shell_and_binds_localhost() -> None:
    argv = ServerConfig(model="/m", python="/py").command(8123)
    assert argv[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and "8123" in argv
    assert all(" " not in a for a in argv)
