"""Parsing a scenario document: validation rejects unknown keys (suggesting the nearest valid
one), wrong types and impossible values, and every message names the file and the key. ``parse``
checks the sections against one another (pool caps against the instance, the budget against the
initial pools, batch sources against deadlines) and builds the types of ``scenario/spec.py``.
About 500 lines in one module on purpose: those cross-checks read every section, and splitting
the sections apart would pass the half-built scenario between modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from chiron_gym import profiles
from chiron_gym.config import Reader
from chiron_gym.scenario.paths import data_path, data_root
from chiron_gym.scenario.spec import REWARD_DEFAULTS, Scenario, ScenarioError, Source, TraceSpec
from chiron_gym.sim import (
    ALL_POOL_NAMES,
    CLASS_NAMES,
    SLO,
    ClusterConfig,
    ColdStart,
    InstanceSpec,
    KVLink,
    LinearPerfModel,
    Pool,
    PoolSpec,
    RequestClass,
)
from chiron_gym.sim.specs import LINKS
from chiron_gym.workload import LengthDist
from chiron_gym.workload.prefix import PrefixSpec
from chiron_gym.workload.sources import (
    ARRIVAL_KINDS,
    COUNT,
    NONNEG,
    NUMBERS,
    PATH,
    POSITIVE,
)
from chiron_gym.workload.tables import length_dist
from chiron_gym.workload.trace import (
    FORMATS,
    ClassAssignment,
    ColumnMap,
    TraceError,
)


def _reader(data: dict[str, Any], source: str, prefix: str, allowed: set[str]) -> Reader:
    return Reader(data, source, prefix, allowed, ScenarioError)


_TOP = {
    "description",
    "budget",
    "reward",
    "horizon_s",
    "decision_interval_s",
    "slo",
    "instance",
    "pools",
    "workload",
    "queue",
    "routing",
    "failures",
    "transfer",
}
_LEN = {"kind", "mean", "cv", "low", "high", "table"}
MAX_TOKENS = 10_000_000  # a prompt or output no model takes (a typo guard, checked at load)


def _failures_at(t: Reader, pools: set[Pool]) -> tuple[tuple[float, Pool], ...]:
    """``[failures] at = [{ t_s = 600.0, pool = "interactive" }, ...]``: scripted failures."""
    if "at" not in t.data:
        return ()
    out = []
    for k, item in enumerate(t.array("at")):
        if not isinstance(item, dict):
            raise t.fail("at", "an array of tables { t_s = ..., pool = ... }")
        r = _reader(item, t.source, f"{t.path('at')}[{k}]", {"t_s", "pool"})
        pool = Pool[r.string("pool", ALL_POOL_NAMES).upper()]
        if pool not in pools:
            raise r.fail("pool", "a pool the scenario has")
        out.append((r.number("t_s", strict=False), pool))
    return tuple(out)


def _transfer(top: Reader, pools: Reader) -> KVLink:
    """``[transfer]``: the link a disaggregated cluster sends KV caches over: a preset
    (``link``: rdma, the default, or nvlink) and its figures overridden."""
    has = [k for k in ("prefill", "decode") if k in pools.data]
    if len(has) == 1:
        other = "decode" if has[0] == "prefill" else "prefill"
        raise pools.fail(other, f"a table: a [pools.{has[0]}] pool needs a [pools.{other}] one")
    t = top.table("transfer", {"link", "bytes_per_s", "latency_s"})
    if t.data and not has:
        raise top.fail("transfer", "absent: only [pools.prefill] and [pools.decode] send KV")
    link = LINKS[t.string("link", tuple(LINKS), "rdma")]
    return KVLink(
        bytes_per_s=t.number("bytes_per_s", link.bytes_per_s),
        latency_s=t.number("latency_s", link.latency_s, strict=False),
    )


def _length(r: Reader, key: str) -> LengthDist:
    t = r.table(key, _LEN, required=True)
    kind = t.string("kind", ("fixed", "lognormal", "empirical"))
    low = t.integer("low", 1, low=1)
    high = t.integer("high", 32_768, low=1)
    if high < low:
        raise t.fail("high", f"at least low ({low})")
    if high > MAX_TOKENS:
        raise t.fail("high", f"at most {MAX_TOKENS:,} tokens")
    if kind == "empirical":
        table = t.text("table")
        try:
            return length_dist(table, key, low=low, high=high)
        except ValueError as e:
            raise t.fail("table", str(e).replace("unknown length table", "a known table; ")) from e
    return LengthDist(
        kind=kind,
        mean=t.number("mean", low=1.0, strict=False),
        cv=t.number("cv", 0.0, strict=False),
        low=low,
        high=high,
    )


_ARRIVAL_VALUES: dict[str, Callable[[Reader, str, Path], Any]] = {
    COUNT: lambda r, key, base: r.integer(key, low=0),
    PATH: lambda r, key, base: str(data_path(r.text(key), base)),
    NUMBERS: lambda r, key, base: r.numbers(key),
    NONNEG: lambda r, key, base: r.number(key, low=0.0, strict=False),
    POSITIVE: lambda r, key, base: r.number(key),
}


def _arrival(w: Reader, base: Path, horizon_s: float) -> dict[str, Any]:
    arr_raw = w.data.get("arrival")
    if not isinstance(arr_raw, dict) or "kind" not in arr_raw:
        raise ScenarioError(
            f"{w.source}: {w.path('arrival')} must be a table with a 'kind' "
            f"({', '.join(ARRIVAL_KINDS)})"
        )
    kind = str(arr_raw["kind"])
    if kind not in ARRIVAL_KINDS:
        r = _reader(arr_raw, w.source, w.path("arrival"), set(arr_raw))
        raise r.fail("kind", "one of " + ", ".join(repr(k) for k in ARRIVAL_KINDS))
    params = ARRIVAL_KINDS[kind].parameters()
    r = _reader(arr_raw, w.source, w.path("arrival"), {"kind", *(f.name for f in params)})
    out: dict[str, Any] = {"kind": kind}
    for f in params:
        if f.name not in arr_raw:
            if f.default is MISSING:
                raise ScenarioError(
                    f"{w.source}: missing key {r.path(f.name)!r} (arrival {kind!r})"
                )
            out[f.name] = f.default
        else:
            out[f.name] = _ARRIVAL_VALUES[f.metadata["value"]](r, f.name, base)
    arrivals = ARRIVAL_KINDS[kind].of(out)
    bad = arrivals.invalid() or arrivals.too_big(horizon_s)
    if bad is not None:
        raise r.fail(*bad)
    return out


def _check_prefix_units(sources: list[Source], pools: list[PoolSpec], source: str) -> None:
    """Every source that hashes its prompts does so in blocks of one size, a whole number of
    KV blocks of every instance type that caches them."""
    units = {i: src.prefix.block_tokens for i, src in enumerate(sources) if src.prefix}
    if len(set(units.values())) > 1:
        first, *_ = units
        other = next(i for i, u in units.items() if u != units[first])
        raise ScenarioError(
            f"{source}: workload[{other}].prefix.block_tokens = {units[other]}: expected "
            f"{units[first]}, as workload[{first}] (one block size for the prompt hashes)"
        )
    for i, unit in units.items():
        for p in pools:
            bs = p.instance.block_size_tokens
            if p.instance.prefix_caching and unit % bs:
                raise ScenarioError(
                    f"{source}: workload[{i}].prefix.block_tokens = {unit}: expected a multiple "
                    f"of the KV block size ({bs} tokens, pools.{p.pool.name.lower()})"
                )


def _fraction(r: Reader, key: str, default: float) -> float:
    value = r.number(key, default, strict=False)
    if value > 1:
        raise r.fail(key, "a number in [0, 1]")
    return value


def _prefix(w: Reader) -> PrefixSpec:
    """``[workload.prefix]``: shared system prompts and conversations (``workload/prefix.py``)."""
    t = w.table(
        "prefix", {"block_tokens", "system_tokens", "tenants", "turns", "max_prompt_tokens"}
    )
    system = t.integer("system_tokens", 0)
    longest = t.integer("max_prompt_tokens", 32_768, low=1)
    if longest <= system:
        raise t.fail("max_prompt_tokens", f"more than system_tokens ({system})")
    return PrefixSpec(
        block_tokens=t.integer("block_tokens", 16, low=1),
        system_tokens=system,
        tenants=t.integer("tenants", 1, low=1),
        turns=t.number("turns", 1.0, low=1.0, strict=False),
        max_prompt_tokens=longest,
    )


def _trace(w: Reader, base: Path) -> TraceSpec:
    t = w.table(
        "trace",
        {"path", "format", "columns", "start_s", "end_s", "time_scale", "rate_scale"},
        required=True,
    )
    path = data_path(t.text("path"), base)
    fmt = t.string("format", FORMATS) if "format" in t.data else None
    columns = None
    if "columns" in t.data:
        try:
            columns = ColumnMap.parse(t.text("columns"))
        except TraceError as e:
            raise t.fail("columns", str(e)) from e
    return TraceSpec(
        path=path,
        fmt=fmt,
        columns=columns,
        start_s=t.number("start_s", 0.0, strict=False),
        end_s=t.optional_number("end_s"),
        time_scale=t.number("time_scale", 1.0),
        rate_scale=t.number("rate_scale", 1.0),
        classes=ClassAssignment(
            batch_fraction=w.number("batch_fraction", 0.0, strict=False),
            prompt_at_least=w.integer("batch_prompt_at_least", low=1)
            if "batch_prompt_at_least" in w.data
            else None,
            batch_labels=tuple(str(x) for x in w.data.get("batch_labels", [])),
        ),
    )


def _composed_profile(inst: Reader) -> profiles.Profile:
    """``profile = { model = "qwen3-32b", gpu = "h100", tp = 2, dtype = "bf16" }``: a profile
    composed from the kernel tables under ``data_root()`` (cached; ``chiron profile build``)."""
    from chiron_gym.profiles.compose import BuildSpec, composed
    from chiron_gym.profiles.models import REGISTRY, resolve

    t = inst.table("profile", {"model", "gpu", "tp", "dtype", "kv_dtype"}, required=True)
    model = t.text("model")
    beside = Path(inst.source).parent / model
    if model.lower() not in REGISTRY and Path(inst.source).is_file() and beside.exists():
        model = str(beside)  # a config.json (or its folder) beside the scenario
    try:
        spec = BuildSpec(
            resolve(model),
            t.string("gpu", ("a100", "h100")),
            t.integer("tp", 1, low=1),
            t.string("dtype", ("bf16", "fp8"), "bf16"),
            t.string("kv_dtype", ("bf16", "fp8"), "bf16"),
        )
        return composed(spec, data_root())
    except profiles.ProfileError as e:
        raise ScenarioError(f"{inst.source}: {inst.path('profile')}: {e}") from e


def _instance_spec(inst: Reader) -> InstanceSpec:
    """``[instance]``: a calibrated profile by name (``profile = "a100-llama3-8b-tp1"``), whose
    KV capacity, GPU count and cold start the other keys may override; or, without a profile, the
    placeholder ``LinearPerfModel`` with an explicit ``kv_capacity_blocks``."""
    overrides: dict[str, Any] = {
        "block_size_tokens": inst.integer("block_size_tokens", 16, low=1),
        "max_num_batched_tokens": inst.integer("max_num_batched_tokens", 2048, low=1),
        "max_batch_cap": inst.integer("max_batch_cap", 256, low=1),
        "prefix_caching": inst.boolean("prefix_caching", False),
    }
    if "kv_capacity_blocks" in inst.data:
        overrides["kv_capacity_blocks"] = inst.integer("kv_capacity_blocks", low=1)
    if "gpus" in inst.data:
        overrides["gpus"] = inst.integer("gpus", low=1)
    if "cold_start" in inst.data:
        cs = inst.table("cold_start", {"kind", "median_s", "sigma", "phases"})
        kind = cs.string("kind", ("fixed", "lognormal"), "fixed")
        sigma = cs.number("sigma", 0.0, strict=False)
        if "phases" in cs.data:
            if "median_s" in cs.data:
                raise cs.fail("median_s", "absent when phases are given (their sum is the median)")
            ph = cs.table(
                "phases", set(cs.data["phases"]) if isinstance(cs.data["phases"], dict) else set()
            )
            phases = tuple((k, ph.number(k, low=0.0, strict=False)) for k in ph.data)
            if not phases:
                raise cs.fail("phases", "a table of phase = seconds, at least one")
            overrides["cold_start"] = ColdStart.of_phases(phases, kind, sigma)
        else:
            overrides["cold_start"] = ColdStart(
                kind=kind, median_s=cs.number("median_s", 60.0, strict=False), sigma=sigma
            )
    if "profile" not in inst.data:
        if "kv_capacity_blocks" not in overrides:
            raise ScenarioError(
                f"{inst.source}: missing key 'instance.profile' (or, for the uncalibrated "
                "placeholder model, 'instance.kv_capacity_blocks')"
            )
        return InstanceSpec(perf_model=LinearPerfModel(), **overrides)
    return _profile_spec(_profile(inst), overrides)


def _profile(r: Reader) -> profiles.Profile:
    """The profile ``r``'s ``profile`` key names: a shipped name, a file, or a composed table."""
    if isinstance(r.data["profile"], dict):
        return _composed_profile(r)
    name = r.text("profile")
    beside = Path(r.source).parent / name
    if name.endswith(".json") and not Path(name).is_absolute() and beside.is_file():
        name = str(beside)  # a profile file relative to the scenario file, as traces are
    try:
        return profiles.load(name)
    except profiles.ProfileError as e:
        raise ScenarioError(f"{r.source}: {r.path('profile')} = {name!r}: {e}") from e


def _profile_spec(prof: profiles.Profile, overrides: dict[str, Any]) -> InstanceSpec:
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
    slo = top.table("slo", set(CLASS_NAMES))
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
            "prefix_caching",
        },
        required=True,
    )
    spec = _instance_spec(inst)
    pools_t = top.table("pools", set(ALL_POOL_NAMES), required=True)
    pools: list[PoolSpec] = []
    for pool in Pool:
        key = pool.name.lower()
        if key not in pools_t.data:
            continue
        pt = pools_t.table(
            key,
            {
                "initial",
                "batch_cap",
                "min",
                "max",
                "profile",
                "gpu_price",
                "warm",
                "wake_s",
                "sleep_cost",
                "failures_per_gpu_hour",
                "reclaims_per_hour",
                "reclaim_notice_s",
                "stockout_probability",
                "stockout_wait_s",
            },
        )
        pool_inst = spec
        if "profile" in pt.data:  # its own hardware, with [instance]'s engine settings
            engine = {
                "block_size_tokens": spec.block_size_tokens,
                "max_num_batched_tokens": spec.max_num_batched_tokens,
                "max_batch_cap": spec.max_batch_cap,
                "prefix_caching": spec.prefix_caching,
            }
            pool_inst = _profile_spec(_profile(pt), engine)
        price = pt.number("gpu_price", 1.0)
        if pt.number("stockout_wait_s", 0.0, strict=False) > 0 and not _fraction(
            pt, "stockout_probability", 0.0
        ):
            raise pt.fail("stockout_wait_s", "0 unless stockout_probability is above 0")
        cap = pt.integer("batch_cap", 64, low=1)
        if cap > spec.max_batch_cap:
            raise pt.fail("batch_cap", f"at most instance.max_batch_cap ({spec.max_batch_cap})")
        initial = pt.integer("initial", 1)
        lo = pt.integer("min", 0 if pool in (Pool.MIXED, Pool.BATCH) else 1)
        hi = pt.integer("max", max(initial, 1) * 4)
        if not lo <= initial <= hi:
            raise pt.fail("initial", f"between min ({lo}) and max ({hi})")
        pools.append(
            PoolSpec(
                pool=pool,
                instance=pool_inst,
                initial_instances=initial,
                initial_batch_cap=cap,
                min_instances=lo,
                max_instances=hi,
                gpu_price=price,
                warm_instances=pt.integer("warm", 0),
                wake_s=pt.number("wake_s", 5.0, strict=False),
                sleep_cost=_fraction(pt, "sleep_cost", 0.1),
                failures_per_gpu_hour=pt.number("failures_per_gpu_hour", 0.0, strict=False),
                reclaims_per_hour=pt.number("reclaims_per_hour", 0.0, strict=False),
                reclaim_notice_s=pt.number("reclaim_notice_s", 120.0, strict=False),
                stockout_probability=_fraction(pt, "stockout_probability", 0.0),
                stockout_wait_s=pt.number("stockout_wait_s", 0.0, strict=False),
            )
        )
    kv_link = _transfer(top, pools_t)
    queue = top.table("queue", {"group_granularity_s"})
    routing = top.table("routing", {"prefix_aware"})
    failures = top.table("failures", {"on_instance_failure", "at"})
    cluster = ClusterConfig(
        pools=tuple(pools),
        interactive_slo=SLO(ttft_s=si.number("ttft_s", 1.0), itl_s=si.number("itl_s", 0.1)),
        batch_slo=SLO(ttft_s=sb.optional_number("ttft_s"), itl_s=sb.optional_number("itl_s")),
        group_granularity_s=queue.number("group_granularity_s", 60.0),
        prefix_routing=routing.boolean("prefix_aware", False),
        failures_at=_failures_at(failures, {p.pool for p in pools}),
        on_failure=failures.string("on_instance_failure", ("requeue", "reject"), "requeue"),
        kv_link=kv_link,
    )
    raw_sources = data.get("workload", [])
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ScenarioError(
            f"{source}: 'workload' must be a non-empty array of tables ([[workload]])"
        )
    sources: list[Source] = []
    base = Path(source).parent
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict):
            raise ScenarioError(f"{source}: workload[{i}] must be a table")
        w = _reader(
            raw,
            source,
            f"workload[{i}]",
            {
                "class",
                "arrival",
                "prompt",
                "output",
                "deadline_s",
                "trace",
                "batch_fraction",
                "batch_prompt_at_least",
                "batch_labels",
                "prefix",
            },
        )
        klass = RequestClass[w.string("class", CLASS_NAMES, "interactive").upper()]
        deadline = w.number("deadline_s") if "deadline_s" in raw else None
        if "trace" in raw:
            for key in ("arrival", "prompt", "output", "prefix"):
                if key in raw:
                    raise ScenarioError(
                        f"{source}: {w.path(key)}: a trace source takes arrivals and lengths "
                        "from the trace"
                    )
            spec_t = _trace(w, base)
            needs_deadline = klass == RequestClass.BATCH or spec_t.classes != ClassAssignment()
            if needs_deadline and deadline is None:
                raise ScenarioError(
                    f"{source}: missing key {w.path('deadline_s')!r} (batch requests need one)"
                )
            sources.append(Source(klass, {}, None, None, deadline, spec_t))
            continue
        if klass == RequestClass.BATCH and deadline is None:
            raise ScenarioError(
                f"{source}: missing key 'workload[{i}].deadline_s' (batch sources need one)"
            )
        arrival = _arrival(w, base, horizon)
        if arrival["kind"] == "closed":
            if len(raw_sources) > 1:
                raise ScenarioError(
                    f"{source}: {w.path('arrival')}: a closed loop must be the scenario's only "
                    f"workload source (found {len(raw_sources)})"
                )
            if klass != RequestClass.INTERACTIVE:
                raise ScenarioError(
                    f"{source}: {w.path('class')}: a closed loop sends interactive requests"
                )
        sources.append(
            Source(
                klass=klass,
                arrival=arrival,
                prompt=_length(w, "prompt"),
                output=_length(w, "output"),
                deadline_s=deadline,
                prefix=_prefix(w) if "prefix" in raw else None,
            )
        )
    _check_prefix_units(sources, pools, source)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise top.fail("description", "a string")
    budget = top.table("budget", {"max_gpus"})
    max_gpus = budget.integer("max_gpus", low=1) if "max_gpus" in budget.data else None
    if max_gpus is not None:
        initial_gpus = sum(p.initial_instances * p.instance.gpus for p in pools)
        if initial_gpus > max_gpus:
            raise budget.fail("max_gpus", f"at least the initial pools' {initial_gpus} GPUs")
    rw = top.table("reward", set(REWARD_DEFAULTS))
    reward = tuple((k, rw.number(k, low=0.0, strict=False)) for k in sorted(rw.data))
    profile = inst.data.get("profile")
    if isinstance(profile, dict):  # a composed profile: its name, as ``chiron profile build``'s
        profile = spec.perf_model.profile.name  # type: ignore[attr-defined]
    return Scenario(
        name=name,
        description=description,
        horizon_s=horizon,
        decision_interval_s=interval,
        cluster=cluster,
        sources=tuple(sources),
        profile=str(profile) if profile is not None else None,
        max_gpus=max_gpus,
        reward=reward,
    )
