"""What a scenario says: the parsed, validated ``Scenario`` and its parts (trace and traffic
sources), its reward defaults, and the workload it generates for a seed."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.config import ConfigError
from chiron_gym.scenario.streams import stream
from chiron_gym.sim import (
    ClusterConfig,
    Pool,
    PoolSpec,
    RequestClass,
    Workload,
)
from chiron_gym.workload import LengthDist
from chiron_gym.workload.prefix import PrefixSpec
from chiron_gym.workload.sources import (
    ARRIVAL_KINDS,
    arrival_times,
)
from chiron_gym.workload.trace import (
    MOONCAKE_BLOCK_TOKENS,
    ClassAssignment,
    ColumnMap,
    read_trace,
    transform,
)


class ScenarioError(ConfigError):
    """A scenario file is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class TraceSpec:
    """A trace replayed as a source: file, format, slicing, scaling and class assignment."""

    path: Path
    fmt: str | None
    columns: ColumnMap | None
    start_s: float
    end_s: float | None
    time_scale: float
    rate_scale: float
    classes: ClassAssignment


@dataclass(frozen=True, slots=True)
class Source:
    """One traffic source: arrivals (a kind and its parameters, or a trace) and lengths."""

    klass: RequestClass
    arrival: dict[str, Any]  # {"kind": ..., parameters}; empty for a trace
    prompt: LengthDist | None  # None for a trace (its own lengths)
    output: LengthDist | None
    deadline_s: float | None  # batch: relative to submission
    trace: TraceSpec | None = None
    prefix: PrefixSpec | None = None  # shared prompt prefixes (``[workload.prefix]``)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, validated scenario."""

    name: str
    description: str
    horizon_s: float
    decision_interval_s: float
    cluster: ClusterConfig
    sources: tuple[Source, ...]
    profile: str | None = None
    max_gpus: int | None = None
    reward: tuple[tuple[str, float], ...] = ()

    def pool_spec(self, pool: Pool) -> PoolSpec | None:
        """The spec of ``pool`` (instance type, initial state, scaling bounds), if it exists."""
        return next((p for p in self.cluster.pools if p.pool == pool), None)

    def reward_weights(self) -> dict[str, float]:
        """The reward weights (defaults filled in)."""
        return {**REWARD_DEFAULTS, **dict(self.reward)}

    def with_trace(self, trace: TraceSpec, deadline_s: float | None = None) -> Scenario:
        """This scenario with its traffic replaced by a trace replay (``--trace``)."""
        src = Source(RequestClass.INTERACTIVE, {}, None, None, deadline_s, trace)
        return replace(self, sources=(src,))

    def workload(self, seed: int) -> Workload:
        """The episode's requests: a pure function of the scenario and the seed."""
        parts: list[Workload] = []
        for i, src in enumerate(self.sources):
            if src.trace is not None:
                parts.append(self._trace_workload(src, stream(seed, f"trace/{i}")))
                continue
            times = arrival_times(
                src.arrival["kind"], src.arrival, stream(seed, f"arrivals/{i}"), self.horizon_s
            )
            len_rng = stream(seed, f"lengths/{i}")
            n = len(times)
            assert src.prompt is not None and src.output is not None
            deadline = np.full(n, np.nan) if src.deadline_s is None else times + src.deadline_s
            prompt = src.prompt.sample(len_rng, n)
            output = src.output.sample(len_rng, n)
            chains = None
            if src.prefix is not None:
                prompt, chains = src.prefix.apply(
                    stream(seed, f"prefix/{i}"), prompt, output, first_id=i << 32
                )
            part = Workload.from_columns(
                arrival_s=times,
                klass=np.full(n, int(src.klass)),
                prompt_tokens=prompt,
                output_tokens=output,
                deadline_s=deadline,
                prefix_blocks=chains,
                prefix_block_tokens=0 if src.prefix is None else src.prefix.block_tokens,
            )
            closed = ARRIVAL_KINDS[src.arrival["kind"]].of(src.arrival).closed_loop()
            if closed is not None:
                part = replace(part, clients=closed[0], warmup=closed[1])
            parts.append(part)
        return Workload.concat(parts)

    def _trace_workload(self, src: Source, rng: np.random.Generator) -> Workload:
        spec = src.trace
        assert spec is not None
        trace = transform(
            read_trace(spec.path, spec.fmt, spec.columns),
            rng,
            start_s=spec.start_s,
            end_s=spec.end_s,
            time_scale=spec.time_scale,
            rate_scale=spec.rate_scale,
        )
        keep = trace.arrival_s < self.horizon_s
        trace = trace.take(np.nonzero(keep)[0])
        is_batch = spec.classes.is_batch(trace, rng)
        if src.klass == RequestClass.BATCH:
            is_batch[:] = True
        if is_batch.any() and src.deadline_s is None:
            raise ScenarioError(f"{spec.path}: batch requests in the trace need deadline_s")
        deadline = np.where(is_batch, trace.arrival_s + (src.deadline_s or 0.0), np.nan)
        return Workload.from_columns(
            arrival_s=trace.arrival_s,
            klass=is_batch.astype(np.int8),
            prompt_tokens=np.maximum(trace.prompt_tokens, 1),
            output_tokens=np.maximum(trace.output_tokens, 1),
            deadline_s=deadline,
            prefix_blocks=trace.blocks,
            prefix_block_tokens=MOONCAKE_BLOCK_TOKENS if trace.blocks is not None else 0,
        )


REWARD_DEFAULTS: dict[str, float] = {
    "slo_met_work": 1.0,  # per 1,000 output tokens of requests that met their SLO
    "gpu_cost": 1000.0,  # per GPU-hour: $2 per GPU-hour against $2 per million good tokens
    "violation": 5.0,  # per request that missed its SLO or was rejected
    "churn": 1.0,  # per instance started or stopped
}
