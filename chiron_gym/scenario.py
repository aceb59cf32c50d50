"""Scenarios: a TOML file describing the cluster, its SLOs and its traffic, loaded by name or path.

Validation rejects unknown keys (suggesting the nearest valid one), wrong types and impossible
values, and every message names the file and the key.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import scenarios as bundled
from chiron_gym.sim import (
    SLO,
    ClusterConfig,
    ColdStart,
    InstanceSpec,
    LinearPerfModel,
    Pool,
    PoolSpec,
    RequestClass,
    Workload,
)
from chiron_gym.workload import LengthDist, bulk_arrivals, poisson_arrivals


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Source:
    """One traffic source of a class."""

    klass: RequestClass
    arrival: dict[str, Any]
    prompt: LengthDist
    output: LengthDist
    deadline_s: float | None  # batch: relative to submission


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, validated scenario."""

    name: str
    description: str
    horizon_s: float
    decision_interval_s: float
    cluster: ClusterConfig
    sources: tuple[Source, ...]

    def workload(self, seed: int) -> Workload:
        """The episode's requests: a pure function of the scenario and the seed."""
        parts: list[Workload] = []
        for i, src in enumerate(self.sources):
            arr_rng = stream(seed, f"arrivals/{i}")
            len_rng = stream(seed, f"lengths/{i}")
            kind = src.arrival["kind"]
            if kind == "poisson":
                times = poisson_arrivals(arr_rng, float(src.arrival["rate_per_s"]), self.horizon_s)
            else:
                times = bulk_arrivals(
                    count=int(src.arrival["count"]),
                    first_s=float(src.arrival.get("first_s", 0.0)),
                    every_s=src.arrival.get("every_s"),
                    horizon_s=self.horizon_s,
                )
            n = len(times)
            deadline = np.full(n, np.nan) if src.deadline_s is None else times + src.deadline_s
            parts.append(
                Workload.from_columns(
                    arrival_s=times,
                    klass=np.full(n, int(src.klass)),
                    prompt_tokens=src.prompt.sample(len_rng, n),
                    output_tokens=src.output.sample(len_rng, n),
                    deadline_s=deadline,
                )
            )
        return Workload.concat(parts)


def stream(seed: int, name: str) -> np.random.Generator:
    """A named child random stream of ``seed`` (independent of every other name)."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))
    )


def load(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name, or a scenario file by path."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        if str(name_or_path) not in bundled.names():
            known = bundled.names()
            near = difflib.get_close_matches(str(name_or_path), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ScenarioError(
                f"unknown scenario {str(name_or_path)!r}{hint}; known: {', '.join(known)}"
            )
        p = bundled.path(str(name_or_path))
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from e
    return parse(data, name=p.stem, source=str(p))


class _Reader:
    """Typed access to one table of a TOML document, recording the key path for messages."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str, allowed: set[str]) -> None:
        self.data, self.source, self.prefix = data, source, prefix
        for key in data:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"; did you mean {self.path(near[0])!r}?" if near else ""
                raise ScenarioError(f"{source}: unknown key {self.path(key)!r}{hint}")

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, expected: str) -> ScenarioError:
        return ScenarioError(
            f"{self.source}: {self.path(key)} = {self.data.get(key)!r}: expected {expected}"
        )

    def number(
        self, key: str, default: float | None = None, *, low: float = 0.0, strict: bool = True
    ) -> float:
        if key not in self.data:
            if default is None:
                raise ScenarioError(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(key, "a number")
        if (strict and v <= low) or (not strict and v < low):
            raise self.fail(key, f"a number {'>' if strict else '>='} {low:g}")
        return float(v)

    def optional_number(self, key: str) -> float | None:
        return self.number(key) if key in self.data else None

    def integer(self, key: str, default: int | None = None, *, low: int = 0) -> int:
        if key not in self.data:
            if default is None:
                raise ScenarioError(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise self.fail(key, f"an integer >= {low}")
        return v

    def string(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise ScenarioError(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if v not in choices:
            raise self.fail(key, "one of " + ", ".join(repr(c) for c in choices))
        return str(v)

    def table(self, key: str, allowed: set[str], required: bool = False) -> _Reader:
        v = self.data.get(key, {} if not required else None)
        if v is None:
            raise ScenarioError(f"{self.source}: missing table {self.path(key)!r}")
        if not isinstance(v, dict):
            raise self.fail(key, "a table")
        return _Reader(v, self.source, self.path(key), allowed)


_TOP = {
    "description",
    "horizon_s",
    "decision_interval_s",
    "slo",
    "instance",
    "pools",
    "workload",
    "queue",
}
_LEN = {"kind", "mean", "cv", "low", "high"}


def _length(r: _Reader, key: str) -> LengthDist:
    t = r.table(key, _LEN, required=True)
    return LengthDist(
        kind=t.string("kind", ("fixed", "lognormal")),
        mean=t.number("mean", low=1.0, strict=False),
        cv=t.number("cv", 0.0, strict=False),
        low=t.integer("low", 1, low=1),
        high=t.integer("high", 32_768, low=1),
    )


def parse(data: dict[str, Any], *, name: str, source: str) -> Scenario:
    """Validate a scenario document."""
    top = _Reader(data, source, "", _TOP)
    horizon = top.number("horizon_s")
    interval = top.number("decision_interval_s")
    if interval > horizon:
        raise top.fail("decision_interval_s", f"at most horizon_s ({horizon:g})")
    slo = top.table("slo", {"interactive", "batch"})
    si = slo.table("interactive", {"ttft_s", "itl_s"})
    sb = slo.table("batch", {"ttft_s", "itl_s"})
    inst = top.table(
        "instance",
        {
            "kv_capacity_blocks",
            "max_num_batched_tokens",
            "max_batch_cap",
            "gpus",
            "cold_start",
            "block_size_tokens",
        },
        required=True,
    )
    cs = inst.table("cold_start", {"kind", "median_s", "sigma"})
    spec = InstanceSpec(
        perf_model=LinearPerfModel(),
        kv_capacity_blocks=inst.integer("kv_capacity_blocks", low=1),
        block_size_tokens=inst.integer("block_size_tokens", 16, low=1),
        max_num_batched_tokens=inst.integer("max_num_batched_tokens", 2048, low=1),
        max_batch_cap=inst.integer("max_batch_cap", 256, low=1),
        gpus=inst.integer("gpus", 1, low=1),
        cold_start=ColdStart(
            kind=cs.string("kind", ("fixed", "lognormal"), "fixed"),
            median_s=cs.number("median_s", 60.0, strict=False),
            sigma=cs.number("sigma", 0.0, strict=False),
        ),
    )
    pools_t = top.table("pools", {"interactive", "mixed", "batch"}, required=True)
    pools: list[PoolSpec] = []
    for pool in Pool:
        key = pool.name.lower()
        if key not in pools_t.data:
            continue
        pt = pools_t.table(key, {"initial", "batch_cap"})
        cap = pt.integer("batch_cap", 64, low=1)
        if cap > spec.max_batch_cap:
            raise pt.fail("batch_cap", f"at most instance.max_batch_cap ({spec.max_batch_cap})")
        pools.append(
            PoolSpec(
                pool=pool,
                instance=spec,
                initial_instances=pt.integer("initial", 1),
                initial_batch_cap=cap,
            )
        )
    queue = top.table("queue", {"group_granularity_s"})
    cluster = ClusterConfig(
        pools=tuple(pools),
        interactive_slo=SLO(ttft_s=si.number("ttft_s", 1.0), itl_s=si.number("itl_s", 0.1)),
        batch_slo=SLO(ttft_s=sb.optional_number("ttft_s"), itl_s=sb.optional_number("itl_s")),
        group_granularity_s=queue.number("group_granularity_s", 60.0),
    )
    raw_sources = data.get("workload", [])
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ScenarioError(
            f"{source}: 'workload' must be a non-empty array of tables ([[workload]])"
        )
    sources: list[Source] = []
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict):
            raise ScenarioError(f"{source}: workload[{i}] must be a table")
        w = _Reader(
            raw, source, f"workload[{i}]", {"class", "arrival", "prompt", "output", "deadline_s"}
        )
        klass = RequestClass[w.string("class", ("interactive", "batch")).upper()]
        arr = w.table(
            "arrival", {"kind", "rate_per_s", "count", "first_s", "every_s"}, required=True
        )
        kind = arr.string("kind", ("poisson", "bulk"))
        arrival: dict[str, Any] = {"kind": kind}
        if kind == "poisson":
            arrival["rate_per_s"] = arr.number("rate_per_s", strict=False)
        else:
            arrival["count"] = arr.integer("count", low=1)
            arrival["first_s"] = arr.number("first_s", 0.0, strict=False)
            if "every_s" in arr.data:
                arrival["every_s"] = arr.number("every_s")
        deadline = w.number("deadline_s") if "deadline_s" in raw else None
        if klass == RequestClass.BATCH and deadline is None:
            raise ScenarioError(
                f"{source}: missing key 'workload[{i}].deadline_s' (batch sources need one)"
            )
        sources.append(
            Source(
                klass=klass,
                arrival=arrival,
                prompt=_length(w, "prompt"),
                output=_length(w, "output"),
                deadline_s=deadline,
            )
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise top.fail("description", "a string")
    return Scenario(
        name=name,
        description=description,
        horizon_s=horizon,
        decision_interval_s=interval,
        cluster=cluster,
        sources=tuple(sources),
    )
