"""Scenarios: a TOML file describing the cluster, its SLOs and its traffic, loaded by name or path.

Validation rejects unknown keys (suggesting the nearest valid one), wrong types and impossible
values, and every message names the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import scenarios as bundled
from chiron_gym import profiles
from chiron_gym.config import ConfigError, Reader
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


class ScenarioError(ConfigError):
    """A scenario file is malformed; the message names the file and the key."""


def _reader(data: dict[str, Any], source: str, prefix: str, allowed: set[str]) -> Reader:
    return Reader(data, source, prefix, allowed, ScenarioError)


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


def _length(r: Reader, key: str) -> LengthDist:
    t = r.table(key, _LEN, required=True)
    return LengthDist(
        kind=t.string("kind", ("fixed", "lognormal")),
        mean=t.number("mean", low=1.0, strict=False),
        cv=t.number("cv", 0.0, strict=False),
        low=t.integer("low", 1, low=1),
        high=t.integer("high", 32_768, low=1),
    )


def _instance_spec(inst: Reader) -> InstanceSpec:
    """``[instance]``: a calibrated profile by name (``profile = "a100-llama3-8b-tp1"``), whose
    KV capacity, GPU count and cold start the other keys may override; or, without a profile, the
    placeholder ``LinearPerfModel`` with an explicit ``kv_capacity_blocks``."""
    overrides: dict[str, Any] = {
        "block_size_tokens": inst.integer("block_size_tokens", 16, low=1),
        "max_num_batched_tokens": inst.integer("max_num_batched_tokens", 2048, low=1),
        "max_batch_cap": inst.integer("max_batch_cap", 256, low=1),
    }
    if "kv_capacity_blocks" in inst.data:
        overrides["kv_capacity_blocks"] = inst.integer("kv_capacity_blocks", low=1)
    if "gpus" in inst.data:
        overrides["gpus"] = inst.integer("gpus", low=1)
    if "cold_start" in inst.data:
        cs = inst.table("cold_start", {"kind", "median_s", "sigma"})
        overrides["cold_start"] = ColdStart(
            kind=cs.string("kind", ("fixed", "lognormal"), "fixed"),
            median_s=cs.number("median_s", 60.0, strict=False),
            sigma=cs.number("sigma", 0.0, strict=False),
        )
    if "profile" not in inst.data:
        if "kv_capacity_blocks" not in overrides:
            raise ScenarioError(
                f"{inst.source}: missing key 'instance.profile' (or, for the uncalibrated "
                "placeholder model, 'instance.kv_capacity_blocks')"
            )
        return InstanceSpec(perf_model=LinearPerfModel(), **overrides)
    name = inst.text("profile")
    try:
        prof = profiles.load(name)
    except profiles.ProfileError as e:
        raise ScenarioError(f"{inst.source}: instance.profile = {name!r}: {e}") from e
    if prof.kv.block_size_tokens != overrides["block_size_tokens"]:
        prof_blocks = prof.kv.capacity_tokens // overrides["block_size_tokens"]
        overrides.setdefault("kv_capacity_blocks", prof_blocks)
    return prof.instance_spec(**overrides)


def parse(data: dict[str, Any], *, name: str, source: str) -> Scenario:
    """Validate a scenario document."""
    top = _reader(data, source, "", _TOP)
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
            "profile",
            "kv_capacity_blocks",
            "max_num_batched_tokens",
            "max_batch_cap",
            "gpus",
            "cold_start",
            "block_size_tokens",
        },
        required=True,
    )
    spec = _instance_spec(inst)
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
        w = _reader(
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
