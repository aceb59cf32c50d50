"""The feature tables: every observation feature's name, unit, normalisation and meaning.

``FEATURES`` is ``chiron_gym/Autoscale-v0``'s table (57 features); ``FEATURES_V1``
(``Autoscale-v1``) appends the prefill and decode pools, what a planner of disaggregated serving
reads, and the capacity each pool lost. Features are only ever appended: a model trained on a
table reads the prefix. ``envs/features.py`` computes them; ``docs/env.md`` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from chiron_gym.sim import ALL_POOL_NAMES, CLASS_NAMES, DISAGGREGATED, POOL_NAMES


@dataclass(frozen=True, slots=True)
class Feature:
    """A named observation feature: raw unit and how it is normalised."""

    name: str
    unit: str
    scale: str  # "max_instances", "max_batch_cap", "per_instance_cap", a number, or "log:<n>"
    doc: str


def _pool_features(p: str) -> list[Feature]:
    return [
        Feature(f"{p}.exists", "0/1", "1", "the scenario has this pool"),
        Feature(f"{p}.ready", "instances", "max_instances", "ready instances"),
        Feature(f"{p}.starting", "instances", "max_instances", "instances in their cold start"),
        Feature(f"{p}.draining", "instances", "max_instances", "instances finishing their work"),
        Feature(f"{p}.batch_cap", "requests", "max_batch_cap", "run-time batch size per instance"),
        Feature(
            f"{p}.running",
            "requests",
            "per_instance_cap",
            "requests running on the pool (vLLM num_requests_running)",
        ),
        Feature(
            f"{p}.waiting",
            "requests",
            "per_instance_cap",
            "requests waiting on the pool's instances (vLLM num_requests_waiting)",
        ),
        Feature(f"{p}.kv_usage", "fraction", "1", "mean KV-cache usage (vLLM kv_cache_usage_perc)"),
        Feature(f"{p}.tokens_per_s", "tokens/s", "log:10", "output tokens per second, last window"),
    ]


def _class_features(c: str) -> list[Feature]:
    return [
        Feature(f"{c}.queue", "requests", "log:10", "requests in the global queue"),
        Feature(f"{c}.arrival_rate", "requests/s", "log:5", "arrivals per second, last window"),
        Feature(
            f"{c}.ttft_p95_over_slo", "ratio", "2", "TTFT p95 / TTFT SLO, last window (0: none)"
        ),
        Feature(f"{c}.itl_p95_over_slo", "ratio", "2", "ITL p95 / ITL SLO, last window (0: none)"),
        Feature(
            f"{c}.attainment", "fraction", "1", "SLO attainment in the window (1: none decided)"
        ),
    ]


def _hardware_features(p: str) -> tuple[Feature, Feature]:
    return (
        Feature(f"{p}.gpus_per_instance", "GPUs", "8", "GPUs of one instance of the pool"),
        Feature(
            f"{p}.relative_speed",
            "ratio",
            "2",
            "decode tokens/s of one instance (32 sequences, 1,024 tokens of context each) over"
            " the mean of the scenario's pools (1: all alike; 0: no pool)",
        ),
    )


FEATURES: tuple[Feature, ...] = (
    *(f for p in POOL_NAMES for f in _pool_features(p)),
    *(f for c in CLASS_NAMES for f in _class_features(c)),
    Feature(
        "batch.wait_over_slack",
        "ratio",
        "2",
        "QLM waiting-time estimate of the most urgent batch group / time to its deadline",
    ),
    Feature("gpus_over_budget", "fraction", "1", "GPUs held / GPU budget (or / max possible)"),
    Feature("time_left", "fraction", "1", "share of the episode still to run"),
    # Appended in the second release (a model trained on the first 40 reads that prefix).
    Feature(
        "mixed.interactive_held",
        "requests",
        "per_instance_cap",
        "interactive requests running or waiting on mixed instances",
    ),
    Feature(
        "batch.capacity_tokens_per_s",
        "tokens/s",
        "log:10",
        "decode capacity serving batch: batch instances at their cap plus the mixed pool's spare"
        " (from the profile)",
    ),
    Feature(
        "batch.instance_tokens_per_s",
        "tokens/s",
        "log:10",
        "decode capacity of one batch-serving instance at its cap (from the profile)",
    ),
    Feature(
        "batch.required_tokens_per_s",
        "tokens/s",
        "log:10",
        "capacity the QLM estimate needs for every queued batch group to meet its deadline",
    ),
    Feature(
        "batch.at_risk",
        "requests",
        "log:10",
        "queued batch requests whose group the estimate says will miss its deadline",
    ),
    # Appended in the third release (heterogeneous pools): what each pool's hardware is.
    *(f for p in POOL_NAMES for f in _hardware_features(p)),
    # Appended in the fourth release (prefix caching): 0 where the pool caches nothing.
    *(
        Feature(
            f"{p}.prefix_hit_rate",
            "fraction",
            "1",
            "share of the prompt tokens admitted in the window that the prefix cache held",
        )
        for p in POOL_NAMES
    ),
    # Appended in the fifth release (arrival history): what the interactive traffic has been doing
    # over the last minutes, so that a policy can tell a calm stream from a bursty one and see a
    # trend (one window of 10 s cannot).
    Feature(
        "interactive.arrival_rate_1m",
        "requests/s",
        "log:5",
        "interactive arrivals per second over the last 60 s (the windows that ended in it)",
    ),
    Feature(
        "interactive.arrival_rate_5m",
        "requests/s",
        "log:5",
        "interactive arrivals per second over the last 300 s (the windows that ended in it)",
    ),
    Feature(
        "interactive.arrival_peak_over_mean_5m",
        "ratio",
        "4",
        "the busiest window's interactive arrival rate in the last 300 s over the 300 s mean"
        " (1: flat or no arrivals)",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


PD_POOL_NAMES: tuple[str, ...] = tuple(ALL_POOL_NAMES[p] for p in DISAGGREGATED)
# ``chiron_gym/Autoscale-v1``: v0's table, then the prefill and decode pools (the
# same features
# as every pool's) and what a planner of disaggregated serving reads (Dynamo's SLA planner: the
# median latencies, the prompt and output lengths; the transfers between the two pools).
FEATURES_V1: tuple[Feature, ...] = (
    *FEATURES,
    *(
        f
        for p in PD_POOL_NAMES
        for f in (
            *_pool_features(p),
            *_hardware_features(p),
            Feature(
                f"{p}.prefix_hit_rate",
                "fraction",
                "1",
                "share of the prompt tokens admitted in the window that the prefix cache held",
            ),
        )
    ),
    Feature(
        "prefill.prompt_tokens_queued",
        "tokens",
        "log:10",
        "prompt tokens still to compute on the prefill pool's instances (running or waiting)",
    ),
    Feature(
        "prefill.transfers",
        "requests",
        "log:10",
        "prefilled requests whose KV cache the prefill pool holds until a decode instance has"
        " read it (waiting for room on a decode instance, or being read)",
    ),
    Feature(
        "decode.transfers",
        "requests",
        "log:10",
        "requests whose KV cache decode instances are reading (held, room reserved)",
    ),
    Feature(
        "interactive.ttft_p50_over_slo",
        "ratio",
        "2",
        "TTFT median / TTFT SLO, last window (0: none)",
    ),
    Feature(
        "interactive.itl_p50_over_slo", "ratio", "2", "ITL median / ITL SLO, last window (0: none)"
    ),
    Feature(
        "interactive.prompt_tokens_mean",
        "tokens",
        "log:10",
        "mean prompt tokens of the interactive requests that arrived in the window (0: none)",
    ),
    Feature(
        "interactive.output_tokens_mean",
        "tokens",
        "log:10",
        "mean output tokens of the interactive requests finished so far in the episode (0: none)",
    ),
    # capacity the cluster loses (issue 42), every pool
    *(
        f
        for p in ALL_POOL_NAMES
        for f in (
            Feature(f"{p}.failures", "instances", "log:5", "instances that failed, last window"),
            Feature(
                f"{p}.reclaim_notices",
                "instances",
                "log:5",
                "spot instances given a reclaim notice, last window",
            ),
            Feature(
                f"{p}.reclaiming",
                "instances",
                "max_instances",
                "instances under a reclaim notice now (draining, then taken)",
            ),
            Feature(
                f"{p}.stockouts",
                "instances",
                "log:5",
                "instances asked for that the provider refused or made wait, last window",
            ),
            Feature(f"{p}.gpu_price", "ratio", "2", "GPU price relative to on-demand (0: no pool)"),
        )
    ),
)
FEATURE_NAMES_V1: tuple[str, ...] = tuple(f.name for f in FEATURES_V1)
_TABLES = {len(FEATURES): FEATURES, len(FEATURES_V1): FEATURES_V1}

__all__ = [
    "FEATURES",
    "FEATURES_V1",
    "FEATURE_NAMES",
    "FEATURE_NAMES_V1",
    "PD_POOL_NAMES",
    "Feature",
]
