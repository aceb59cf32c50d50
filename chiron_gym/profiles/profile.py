"""Profiles: one JSON file per (GPU, model, tensor parallelism), loaded by name, validated.

A profile holds the model's shape, the GPU memory and the KV capacity it implies, the fitted
coefficients of every term of ``forms.py``, the cold-start distribution, the provenance of the
data it was fitted on, and its held-out error (those parts are the types of ``parts.py``).
``parse`` reads a profile's document and ``Profile.to_document`` writes it;
``ProfilePerfModel`` (``perf.py``) turns one into the simulator's ``PerfModel``.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, fields, is_dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from chiron_gym.config import ConfigError, Reader
from chiron_gym.profiles.forms import (
    Affine,
    AllReduce,
    DecodeAttention,
    FlatThenLinear,
    PrefillAttention,
)
from chiron_gym.profiles.parts import GEMMS, IterationCoefficients, KvCache, ModelShape, Record
from chiron_gym.profiles.perf import ProfilePerfModel
from chiron_gym.sim import ColdStart, InstanceSpec

SCHEMA = 1


class ProfileError(ConfigError):
    """A profile file is missing, malformed or mistyped; the message names the file and field."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One calibrated instance type."""

    name: str
    gpu_name: str
    gpu_memory_bytes: int
    tensor_parallel: int
    model: ModelShape
    kv: KvCache
    iteration: IterationCoefficients
    cold_start: ColdStart
    record: Record
    frontend_latency_s: float = 0.0  # client-side latency outside the engine (measured profiles)

    @property
    def mape_pct(self) -> dict[str, float]:
        """Held-out mean absolute percentage error per component (and ``pooled``)."""
        return self.record.mape_pct

    def to_document(self) -> dict[str, Any]:
        """The document of this profile's file, which ``parse`` reads back."""
        return _to_document(self)

    def perf_model(self) -> ProfilePerfModel:
        """The simulator's iteration-time model for this profile."""
        return ProfilePerfModel(self)

    def figures(self) -> dict[str, float]:
        """Its speed in two figures (what ``chiron profile build`` prints): the iteration time
        in seconds of a decode of 32 sequences of 1,024 tokens and of a prefill of 2,048."""
        from chiron_gym.sim.perf_model import BatchComposition

        pm = self.perf_model()
        return {
            "decode_32x1024_s": pm.iteration_time_s(
                BatchComposition.with_decodes([], [], [1024] * 32)
            ),
            "prefill_2048_s": pm.iteration_time_s(BatchComposition.with_decodes([2048], [0], [])),
        }

    def instance_spec(self, **overrides: Any) -> InstanceSpec:
        """An ``InstanceSpec`` with this profile's model, KV capacity, GPUs and cold start."""
        fields: dict[str, Any] = {
            "perf_model": self.perf_model(),
            "kv_capacity_blocks": self.kv.capacity_blocks,
            "block_size_tokens": self.kv.block_size_tokens,
            "gpus": self.tensor_parallel,
            "kv_bytes_per_token": self.kv.bytes_per_token,
            "cold_start": self.cold_start,
            "frontend_latency_s": self.frontend_latency_s,
        }
        fields.update(overrides)
        return InstanceSpec(**fields)


# --------------------------------------------------------------------------------- loading


def _coef(r: Reader, key: str) -> float:
    return r.number(key, low=-math.inf, strict=False)


def _affine(r: Reader, key: str) -> Affine:
    t = r.table(key, {"const_s", "slope_s"}, required=True)
    return Affine(_coef(t, "const_s"), _coef(t, "slope_s"))


def _flat_linear(r: Reader, key: str) -> FlatThenLinear:
    t = r.table(key, {"floor_s", "base_s", "slope_s", "quantum"}, required=True)
    return FlatThenLinear(
        _coef(t, "floor_s"), _coef(t, "base_s"), _coef(t, "slope_s"), t.integer("quantum", low=1)
    )


def _allreduce(it: Reader) -> AllReduce | None:
    if it.data.get("allreduce") is None:
        return None
    t = it.table("allreduce", {"custom", "nccl", "custom_max_bytes"}, required=True)
    return AllReduce(
        _flat_linear(t, "custom"), _flat_linear(t, "nccl"), t.integer("custom_max_bytes", low=1)
    )


def parse(data: Any, source: str) -> Profile:
    """Validate a profile document; errors name ``source`` and the dotted field."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a JSON object at the top level")
    top = Reader(
        data,
        source,
        "",
        {
            "schema",
            "name",
            "gpu",
            "model",
            "tensor_parallel",
            "kv",
            "iteration",
            "cold_start",
            "provenance",
            "validation",
            "frontend",
        },
        ProfileError,
    )
    if top.integer("schema", low=1) != SCHEMA:
        raise top.fail("schema", f"{SCHEMA}")
    gpu = top.table("gpu", {"name", "memory_bytes"}, required=True)
    sizes = [f for f in ModelShape.__dataclass_fields__ if f != "name"]
    m = top.table("model", {"name", *sizes}, required=True)
    model = ModelShape(name=m.text("name"), **{k: m.integer(k, low=1) for k in sizes})
    k = top.table(
        "kv",
        {
            "block_size_tokens",
            "gpu_memory_utilization",
            "reserve_bytes",
            "bytes_per_token",
            "capacity_tokens",
            "capacity_blocks",
        },
        required=True,
    )
    kv = KvCache(
        block_size_tokens=k.integer("block_size_tokens", low=1),
        gpu_memory_utilization=k.number("gpu_memory_utilization"),
        reserve_bytes=k.integer("reserve_bytes"),
        bytes_per_token=k.integer("bytes_per_token", low=1),
        capacity_tokens=k.integer("capacity_tokens", low=1),
        capacity_blocks=k.integer("capacity_blocks", low=1),
    )
    it = top.table(
        "iteration",
        {
            "cpu",
            "embedding",
            "lm_head",
            "gemm",
            "elementwise",
            "allreduce",
            "prefill_attention",
            "decode_attention",
        },
        required=True,
    )
    gemm_t = it.table("gemm", set(GEMMS), required=True)
    pa = it.table(
        "prefill_attention",
        {"const_s", "per_seq_s", "per_token_s", "per_pair_s", "per_tile_s"},
        required=True,
    )
    da = it.table(
        "decode_attention", {"seqs", "floor_s", "base_s", "per_context_token_s"}, required=True
    )
    seqs = da.numbers("seqs")
    if any(x != int(x) or x < 1 for x in seqs) or sorted(set(seqs)) != seqs:
        raise da.fail("seqs", "increasing positive integers")
    decode_cols = [da.numbers(f) for f in ("floor_s", "base_s", "per_context_token_s")]
    for f, col in zip(("floor_s", "base_s", "per_context_token_s"), decode_cols, strict=True):
        if len(col) != len(seqs):
            raise da.fail(f, f"{len(seqs)} numbers, one per entry of seqs")
    iteration = IterationCoefficients(
        cpu=_affine(it, "cpu"),
        embedding=_affine(it, "embedding"),
        lm_head=_flat_linear(it, "lm_head"),
        gemm={g: _flat_linear(gemm_t, g) for g in GEMMS},
        elementwise=_affine(it, "elementwise"),
        allreduce=_allreduce(it),
        prefill_attention=PrefillAttention(
            *(
                _coef(pa, f)
                for f in ("const_s", "per_seq_s", "per_token_s", "per_pair_s", "per_tile_s")
            )
        ),
        decode_attention=DecodeAttention(
            tuple(int(x) for x in seqs), *(tuple(col) for col in decode_cols)
        ),
    )
    cs = top.table(
        "cold_start", {"kind", "median_s", "sigma", "observations_s", "source"}, required=True
    )
    cold = ColdStart(
        kind=cs.string("kind", ("fixed", "lognormal")),
        median_s=cs.number("median_s"),
        sigma=cs.number("sigma", low=0.0, strict=False),
    )
    prov = top.table("provenance", {"sources", "notes"}, required=True)
    prov.array("sources")
    val = top.table("validation", {"heldout_fraction", "seed", "mape_pct", "points"}, required=True)
    mape_raw = val.data.get("mape_pct")
    if not isinstance(mape_raw, dict):
        raise val.fail("mape_pct", "a table of component -> percent")
    mape_t = Reader(mape_raw, source, "validation.mape_pct", set(mape_raw), ProfileError)
    frontend = top.table("frontend", {"latency_s", "source"})
    out = Profile(
        frontend_latency_s=frontend.number("latency_s", 0.0, strict=False),
        name=top.text("name"),
        gpu_name=gpu.text("name"),
        gpu_memory_bytes=gpu.integer("memory_bytes", low=1),
        tensor_parallel=top.integer("tensor_parallel", low=1),
        model=model,
        kv=kv,
        iteration=iteration,
        cold_start=cold,
        record=Record(
            sources=prov.array("sources"),
            notes=prov.data.get("notes", []),
            heldout_fraction=val.data.get("heldout_fraction", 0.0),
            seed=val.data.get("seed", 0),
            mape_pct={key: mape_t.number(key, low=0.0, strict=False) for key in mape_raw},
            points=val.data.get("points", {}),
            cold_start_observations_s=cs.data.get("observations_s", []),
            cold_start_source=cs.data.get("source", ""),
            frontend_source=frontend.data.get("source", "") if "frontend" in data else None,
        ),
    )
    _check_positive_times(out, source)
    return out


def _check_positive_times(profile: Profile, source: str) -> None:
    """Fitted coefficients may be negative (an intercept), but no iteration the simulator can
    run may take zero or negative time: probe decode and prefill batches across the range."""
    from chiron_gym.sim.perf_model import BatchComposition

    perf = profile.perf_model()
    capacity = max(profile.kv.capacity_tokens, 1)
    probes: list[tuple[str, BatchComposition]] = []
    for n in (1, 2, 8, 32, 128, 256):
        for ctx in (1, 512, 8192):
            if n * ctx <= capacity:
                probes.append(
                    (f"{n} decodes of {ctx} tokens", BatchComposition([], [], n, n * ctx))
                )
    for chunk in (1, 16, 512, 2048, 8192):
        probes.append((f"a prefill chunk of {chunk} tokens", BatchComposition([chunk], [0])))
    for what, batch in probes:
        t = perf.iteration_time_s(batch)
        if not (t > 0 and math.isfinite(t)):
            raise ProfileError(
                f"{source}: iteration: {what} would take {t:g} s; expected a positive time "
                "(check the coefficients of 'iteration', e.g. a negative constant)"
            )


def _table(x: Any) -> Any:
    """A form (dataclass) as its table, its tuples as arrays: field names are the schema's keys."""
    if is_dataclass(x):
        return {f.name: _table(getattr(x, f.name)) for f in fields(x)}
    if isinstance(x, dict):
        return {k: _table(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_table(v) for v in x]
    return x


def _to_document(p: Profile) -> dict[str, Any]:
    """The profile file's document, the inverse of ``parse``: what ``fit.py`` and ``measure.py``
    write (in the order they always wrote it)."""
    rec = p.record
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": p.name,
        "gpu": {"name": p.gpu_name, "memory_bytes": p.gpu_memory_bytes},
        "model": _table(p.model),
        "tensor_parallel": p.tensor_parallel,
        "kv": _table(p.kv),
    }
    if rec.frontend_source is not None:
        doc["frontend"] = {"latency_s": p.frontend_latency_s, "source": rec.frontend_source}
    doc["iteration"] = _table(p.iteration)
    doc["cold_start"] = {
        "kind": p.cold_start.kind,
        "median_s": p.cold_start.median_s,
        "sigma": p.cold_start.sigma,
        "observations_s": rec.cold_start_observations_s,
        "source": rec.cold_start_source,
    }
    doc["provenance"] = {"sources": rec.sources, "notes": rec.notes}
    doc["validation"] = {
        "heldout_fraction": rec.heldout_fraction,
        "seed": rec.seed,
        "mape_pct": rec.mape_pct,
        "points": rec.points,
    }
    return doc


def data_dir() -> Path:
    """The folder of the shipped profile files."""
    return Path(str(resources.files("chiron_gym.profiles") / "data"))


def names() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in data_dir().glob("*.json"))


def read_json(p: Path, what: str) -> Any:
    """The JSON document in ``p``; ``ProfileError`` naming the file (and line) otherwise."""
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"{p}: cannot read {what}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ProfileError(f"{p}: cannot read {what}: not UTF-8 text (byte {e.start})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ProfileError(f"{p}: not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from e


@lru_cache(maxsize=32)
def _load_path(path: str) -> Profile:
    p = Path(path)
    return parse(read_json(p, "profile"), str(p))


def load(name_or_path: str | Path) -> Profile:
    """Load a shipped profile by name, or a profile file by path."""
    p = Path(name_or_path)
    if p.suffix != ".json":
        known = names()
        if str(name_or_path) not in known:
            near = difflib.get_close_matches(str(name_or_path), known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ProfileError(
                f"unknown profile {str(name_or_path)!r}{hint}; known: {', '.join(known)}"
            )
        p = data_dir() / f"{name_or_path}.json"
    return _load_path(str(p.resolve()))
