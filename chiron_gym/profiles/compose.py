"""Profiles composed from kernel tables: any dense model on A100 or H100 (``chiron profile build``).

Where ``fit.py`` fits a profile to per-operator measurements of *that* model (Vidur's
``mlp.csv``), this module builds one for a model nobody profiled, from measurements of kernels
(AIConfigurator's vLLM 0.14 tables, as AIConfigurator and Vidur compose their estimates):

- each GEMM of a layer (QKV, O, gate+up merged, down) at its ``(m, n, k)`` for the TP shard, read
  from the GEMM table (bf16, or fp8 on H100) and interpolated bilinearly in ``(n, k)`` at every
  ``m`` of the grid (proportionally beyond its edges; ``kernels.GemmTable``), then summarised by
  the ``FlatThenLinear`` form in ``m`` = tokens;
- prefill and decode attention from the attention tables at the model's query and KV heads per
  GPU (bf16 or fp8 KV cache), the forms' coefficients interpolated linearly between the two
  nearest head counts the table has;
- the LM head from the GEMM table at ``n = vocab / TP``, ``k = hidden`` (bf16);
- the all-reduce (vLLM's custom kernel, NCCL above 8 MiB) as ``fit.py`` does;
- what the kernel tables do not time: the element-wise ops and the embedding from a bandwidth law
  fitted on every model Vidur profiled on that GPU (``time = const + a * elements per token *
  tokens``; ``kernels.fit_bandwidth_law``), and the CPU overhead from Vidur's table for the
  nearest model at the same TP;
- KV capacity from GPU memory minus the weights in the chosen dtype and the activation reserve.

The output is a profile document of the same schema as the fitted ones (``profile.parse`` reads
it), with the tables, their commits and SHA-256, and the shape's source in its provenance. Its
``validation.mape_pct`` is the error of each form against the table points it summarises (20%
held out, as ``fit.py``); how the composed profiles compare with measured ones is
``compose_check.py``'s question (``docs/profiles.md``). ``composed`` caches a build on disk.

Why one module of over 450 lines: every term's composition reads the same ``BuildSpec`` (its
shard shapes, heads per GPU, dtypes) and the same ``Target`` it makes for the shared fitters, so
the terms sit beside the spec; the table lookups that need no spec are in ``kernels.py``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.profiles.fit import assemble, dumps, heldout_mape
from chiron_gym.profiles.fit_terms import (
    QUANTA,
    Component,
    _read_parquet,
    _source,
    _split,
    fit_allreduce,
    fit_cold_start,
    fit_cpu,
    fit_decode_attention,
    fit_prefill_attention,
)
from chiron_gym.profiles.forms import DecodeAttention, FlatThenLinear, PrefillAttention
from chiron_gym.profiles.kernels import LAWS, GemmTable, fit_bandwidth_law, fused_fp8
from chiron_gym.profiles.leastsq import FloatArray, fit_flat_linear, round6
from chiron_gym.profiles.models import ModelSpec
from chiron_gym.profiles.parts import KvCache
from chiron_gym.profiles.profile import Profile, ProfileError, parse
from chiron_gym.profiles.targets import (
    AICONFIGURATOR,
    BLOCK_SIZE_TOKENS,
    GPU_MEMORY_UTILIZATION,
    GPUS,
    RESERVE_BYTES_PER_GPU,
    VIDUR,
    Target,
)

DTYPES = {"bf16": ("bfloat16", 2.0), "fp8": ("fp8", 1.0)}  # --dtype, --kv-dtype: table name, bytes
TP_SIZES = (1, 2, 4, 8)
MAX_GEMM_M = 8192  # the GEMM table's largest m; the form extrapolates linearly beyond
# Vidur's CPU-overhead table: (model, TP, parameters in billions)
CPU_MODELS = (
    ("microsoft/phi-2", 1, 2.7),
    ("meta-llama/Llama-2-7b-hf", 1, 6.7),
    ("internlm/internlm-20b", 2, 20.0),
    ("codellama/CodeLlama-34b-Instruct-hf", 2, 34.0),
    ("meta-llama/Llama-2-70b-hf", 4, 69.0),
    ("Qwen/Qwen-72B", 4, 72.0),
)


@dataclass(frozen=True, slots=True)
class BuildSpec:
    """What to build: a model on a GPU type at a tensor-parallel degree and dtypes."""

    model: ModelSpec
    gpu: str  # a key of GPUS
    tp: int
    dtype: str = "bf16"  # GEMM weights and activations
    kv_dtype: str = "bf16"
    # fp8 GEMMs from the kernel table's rows as timed, their input's quantisation included (the
    # composition before stop 50; for studies of it: benchmarks/fp8_projection.py; the name, and
    # so the held-out splits, stay those of the default). Default: the quantisation fused, as
    # served (kernels.fused_fp8)
    fp8_unfused: bool = False

    @property
    def name(self) -> str:
        slug = re.sub(r"[^a-z0-9.]+", "-", self.model.shape.name.split("/")[-1].lower()).strip("-")
        out = f"{self.gpu}-{slug}-tp{self.tp}"
        if self.dtype != "bf16":
            out += f"-{self.dtype}"
        if self.kv_dtype != "bf16":
            out += f"-kv{self.kv_dtype}"
        return out

    def check(self) -> None:
        s = self.model.shape
        if self.gpu not in GPUS:
            raise ProfileError(f"--gpu {self.gpu!r}: expected one of {', '.join(GPUS)}")
        if self.tp not in TP_SIZES:
            raise ProfileError(f"--tp {self.tp}: expected one of {', '.join(map(str, TP_SIZES))}")
        for flag, v in (("--dtype", self.dtype), ("--kv-dtype", self.kv_dtype)):
            if v not in DTYPES:
                raise ProfileError(f"{flag} {v!r}: expected one of {', '.join(DTYPES)}")
            if v == "fp8" and self.gpu == "a100":
                raise ProfileError(
                    f"{flag} fp8 on a100: the A100 has no FP8 tensor cores and the kernel tables "
                    "have no A100 FP8 rows; use bf16, or --gpu h100"
                )
        if self.fp8_unfused and self.dtype != "fp8":
            raise ProfileError("fp8_unfused: the weights are not fp8 (--dtype fp8)")
        if s.heads % self.tp:
            raise ProfileError(
                f"{s.name}: {s.heads} attention heads do not split over TP {self.tp}"
            )
        if s.kv_heads % self.tp and self.tp % s.kv_heads:
            raise ProfileError(
                f"{s.name}: {s.kv_heads} KV heads neither split over TP {self.tp} nor divide it "
                "(vLLM needs one or the other)"
            )
        if s.head_dim != 128:
            raise ProfileError(
                f"{s.name}: head_dim {s.head_dim}: the attention tables cover head_dim 128 only"
            )

    @property
    def heads_per_gpu(self) -> tuple[int, int]:
        """Query and KV heads per GPU (vLLM replicates KV heads when TP exceeds them)."""
        s = self.model.shape
        return s.heads // self.tp, max(1, s.kv_heads // self.tp)


# ------------------------------------------------------------------------------------ GEMMs


def gemm_shapes(spec: BuildSpec) -> dict[str, tuple[int, int]]:
    """``(n, k)`` of each GEMM of a layer on one GPU, as vLLM's parallel linear layers split
    them: QKV and gate+up column-parallel (merged), O and down row-parallel."""
    s = spec.model.shape
    h, kv = spec.heads_per_gpu
    return {
        "qkv": ((h + 2 * kv) * s.head_dim, s.hidden),
        "o": (s.hidden, h * s.head_dim),
        "up": (2 * s.ffn // spec.tp, s.hidden),
        "down": (s.hidden, s.ffn // spec.tp),
    }


def _gemm_table(spec: BuildSpec, data: Path, dtype: str) -> tuple[GemmTable, str]:
    gpu = GPUS[spec.gpu]
    rel = f"{gpu.aiconfigurator}/gemm/vllm/0.14.0/gemm_perf.parquet"
    df = _read_parquet(data / AICONFIGURATOR.local / rel)
    table, _ = DTYPES[dtype]
    rows, label = df[df["gemm_dtype"] == table], f"{rel} ({table})"
    if dtype == "fp8" and not spec.fp8_unfused:  # as served: the quantisation fused
        rows = fused_fp8(rows, df[df["gemm_dtype"] == DTYPES["bf16"][0]])
        label = f"{rel} ({table}, quantisation fused)"
    elif dtype == "fp8":
        label = f"{rel} ({table}, as timed: quantisation not fused)"
    return GemmTable(rows, label), rel


def _target(spec: BuildSpec, heads: int | None = None, kv: int | None = None) -> Target:
    """A ``fit_terms.Target`` for this build (the fitters take one), optionally at other query
    and KV heads per GPU (to fit the attention tables at the head counts they have)."""
    s = spec.model.shape
    h0, kv0 = spec.heads_per_gpu
    shape = replace(s, heads=(heads or h0) * spec.tp, kv_heads=(kv or kv0) * spec.tp)
    cpu_model = _cpu_model(spec)[0]
    return Target(spec.name, GPUS[spec.gpu], shape, spec.tp, cpu_model, _cold_rows(spec))


def compose_gemms(spec: BuildSpec, data: Path) -> Component:
    """The four GEMMs of a layer, each a ``FlatThenLinear`` in tokens fitted to the table's
    latencies at its shape (20% of the m grid held out)."""
    table, rel = _gemm_table(spec, data, spec.dtype)
    ms = np.array([m for m in table.m if m <= MAX_GEMM_M], dtype=np.float64)
    forms: dict[str, FlatThenLinear] = {}
    ape: list[FloatArray] = []
    notes = []
    for g, (n, k) in gemm_shapes(spec).items():
        t = np.array([table(int(m), n, k) for m in ms])
        test = _split(_target(spec), f"gemm/{g}", len(ms))
        test[0] = test[-1] = False  # keep the grid's ends in the fit
        f = fit_flat_linear(ms[~test], t[~test], QUANTA)
        forms[g] = f
        ape.append(np.abs(np.array([f(m) for m in ms[test]]) / t[test] - 1.0) * 100.0)
        on_grid = n in table.n and k in table.k
        notes.append(
            f"GEMM {g}: n={n}, k={k} per GPU ({DTYPES[spec.dtype][0]})"
            + ("" if on_grid else ", interpolated between grid points")
        )
    notes.append(
        f"GEMM table ({DTYPES[spec.dtype][0]}): made non-decreasing in m per (n, k); "
        f"{table.artifacts} of {len(table.t)} points were over 1.3x a larger m's time"
    )
    return Component(
        terms={"gemm": forms},
        heldout_ape=np.concatenate(ape),
        points=4 * len(ms),
        sources=[_source(AICONFIGURATOR, rel, data, f"layer GEMMs ({spec.dtype})")],
        notes=notes,
    )


def compose_lm_head(spec: BuildSpec, data: Path) -> Component:
    """The vocabulary GEMM (bf16: vLLM keeps the LM head unquantised), m = sequences."""
    table, rel = _gemm_table(spec, data, "bf16")
    s = spec.model.shape
    ms = np.array([m for m in table.m if m <= 4096], dtype=np.float64)
    n, k = s.vocab / spec.tp, s.hidden
    t = np.array([table(int(m), n, k) for m in ms])
    test = _split(_target(spec), "lm_head", len(ms))
    test[0] = test[-1] = False
    f = fit_flat_linear(ms[~test], t[~test], (1,))
    return Component(
        terms={"lm_head": f},
        heldout_ape=np.abs(np.array([f(m) for m in ms[test]]) / t[test] - 1.0) * 100.0,
        points=len(ms),
        sources=[_source(AICONFIGURATOR, rel, data, "LM head GEMM (bf16)")],
        notes=[f"LM head: n = vocab / TP = {n:g}, k = {k} (bf16), from the GEMM table"],
    )


# -------------------------------------------------------------------------------- attention


def _heads_in_table(data: Path, spec: BuildSpec, table: str) -> dict[int, list[int]]:
    gpu = GPUS[spec.gpu]
    rel = f"{gpu.aiconfigurator}/attention/vllm/0.14.0/{table}_attention_perf.parquet"
    df = _read_parquet(data / AICONFIGURATOR.local / rel)
    df = df[df["kv_cache_dtype"] == DTYPES[spec.kv_dtype][0]]
    out: dict[int, list[int]] = {}
    for h, kv in sorted(set(zip(df["num_heads"], df["num_key_value_heads"], strict=True))):
        out.setdefault(int(h), []).append(int(kv))
    return out


def _interpolate(a: Any, b: Any, w: float) -> Any:
    """Coefficients of two forms of one type, interpolated (``w`` the weight of ``b``)."""
    if isinstance(a, PrefillAttention):
        fa = (a.const_s, a.per_seq_s, a.per_token_s, a.per_pair_s, a.per_tile_s)
        fb = (b.const_s, b.per_seq_s, b.per_token_s, b.per_pair_s, b.per_tile_s)
        return PrefillAttention(*(round6(x + w * (y - x)) for x, y in zip(fa, fb, strict=True)))
    seqs = tuple(s for s in a.seqs if s in b.seqs)
    cols = []
    for f in ("floor_s", "base_s", "per_context_token_s"):
        ca = dict(zip(a.seqs, getattr(a, f), strict=True))
        cb = dict(zip(b.seqs, getattr(b, f), strict=True))
        cols.append(tuple(round6(ca[s] + w * (cb[s] - ca[s])) for s in seqs))
    return DecodeAttention(seqs, *cols)


def compose_attention(spec: BuildSpec, data: Path, kind: str) -> Component:
    """Prefill (``kind="context"``) or decode (``"generation"``) attention at the build's heads
    per GPU; between two head counts of the table, the fitted coefficients are interpolated."""
    h, kv = spec.heads_per_gpu
    have = _heads_in_table(data, spec, kind)
    hs = sorted(have)
    if not hs or h > hs[-1]:
        raise ProfileError(
            f"{spec.model.shape.name}: {h} query heads per GPU at TP {spec.tp}; the attention "
            f"table covers at most {hs[-1] if hs else 0} (use a larger tensor parallelism)"
        )
    fit = fit_prefill_attention if kind == "context" else fit_decode_attention
    kv_dtype = DTYPES[spec.kv_dtype][0]
    field = "prefill_attention" if kind == "context" else "decode_attention"
    notes: list[str] = []

    def at(hh: int) -> Component:
        kvs = have[hh]
        use = kv if kv in kvs else min(kvs, key=lambda x: (abs(x - kv), -x))
        if kind == "generation":
            use = kv  # the decode fitter scales the per-token cost itself when kv is missing
        elif use != kv:
            notes.append(
                f"prefill attention: the table has no {hh} q / {kv} kv-head rows; fitted at "
                f"{hh}/{use} (prefill time is driven by the query heads)"
            )
        return fit(_target(spec, hh, use), data, kv_dtype=kv_dtype)

    if h in have:
        c = at(h)
        return replace(c, notes=c.notes + notes)
    lo = max(x for x in hs if x < h)
    hi = min(x for x in hs if x > h)
    w = (h - lo) / (hi - lo)
    a, b = at(lo), at(hi)
    notes.append(
        f"{field.replace('_', ' ')}: {h} query heads per GPU are not in the table; coefficients "
        f"interpolated between {lo} and {hi} heads (weight {w:.3g})"
    )
    return Component(
        terms={field: _interpolate(a.terms[field], b.terms[field], w)},
        heldout_ape=np.concatenate([a.heldout_ape, b.heldout_ape]),
        points=a.points + b.points,
        sources=a.sources,
        notes=a.notes + notes,
    )


# ------------------------------------------------- element-wise, embedding: bandwidth laws


def compose_pointwise(spec: BuildSpec, data: Path) -> tuple[Component, Component]:
    """The element-wise ops and the embedding, by bandwidth laws fitted on Vidur's models."""
    s = spec.model.shape
    out = []
    for field, ops, elements in LAWS:
        law, sources = fit_bandwidth_law(spec.gpu, data, ops, elements)
        out.append(
            Component(
                terms={field: law.form(elements(s, spec.tp))},
                heldout_ape=np.zeros(0),
                points=0,
                sources=sources,
                notes=[
                    f"{field}: const + per element x elements per token x tokens, fitted across "
                    f"Vidur's models on {spec.gpu} ({law.const_s:.3g} s + "
                    f"{law.per_element_s:.3g} s per element); validated leave-one-model-out in "
                    "docs/profiles.md"
                ],
            )
        )
    return out[0], out[1]


# ------------------------------------------------------------------- CPU, cold start, memory


def _cpu_model(spec: BuildSpec) -> tuple[str, int]:
    """The model of Vidur's CPU table nearest in size at the build's TP (TP 8: TP 4's)."""
    linear, other = spec.model.parameters()
    billions = (linear + other) / 1e9
    tp = min(spec.tp, 4)
    same = [c for c in CPU_MODELS if c[1] == tp]
    best = min(same, key=lambda c: abs(math.log(c[2] / billions)))
    return best[0], best[1]


def _cold_rows(spec: BuildSpec) -> tuple[str, str]:
    linear, other = spec.model.parameters()
    if (linear + other) / 1e9 < 20:
        return ("Llama-3-8B", "replica_startup_total")
    return ("meta-llama/Meta-Llama-3-70B", "engine_init_to_ready_approx")


def compose_cpu(spec: BuildSpec, data: Path) -> Component:
    model, tp = _cpu_model(spec)
    target = replace(_target(spec), tp=tp, cpu_model=model)
    c = fit_cpu(target, data)
    note = f"CPU overhead: Vidur's rows of {model} at TP {tp} (nearest in size at this TP)"
    if tp != spec.tp:
        note += f"; TP {spec.tp} is not in the table"
    return replace(c, notes=[*c.notes, note])


def kv_cache(spec: BuildSpec) -> KvCache:
    s = spec.model.shape
    gpu = GPUS[spec.gpu]
    kv_bytes = DTYPES[spec.kv_dtype][1]
    weights = spec.model.weight_bytes(DTYPES[spec.dtype][1])
    free = GPU_MEMORY_UTILIZATION * gpu.memory_bytes - weights / spec.tp - RESERVE_BYTES_PER_GPU
    _, kv_gpu = spec.heads_per_gpu
    per_token_gpu = s.kv_bytes_per_token(kv_bytes, kv_heads=kv_gpu)
    if free <= per_token_gpu * BLOCK_SIZE_TOKENS:
        raise ProfileError(
            f"{s.name} at TP {spec.tp} in {spec.dtype}: the weights "
            f"({weights / spec.tp / 2**30:.1f} GiB per GPU) leave no KV memory on an 80 GiB "
            f"{gpu.name}; use a larger tensor parallelism"
            + (" or FP8 weights" if spec.gpu == "h100" and spec.dtype != "fp8" else "")
        )
    blocks = int(free // (per_token_gpu * BLOCK_SIZE_TOKENS))
    return KvCache(
        block_size_tokens=BLOCK_SIZE_TOKENS,
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        reserve_bytes=RESERVE_BYTES_PER_GPU * spec.tp,
        bytes_per_token=int(per_token_gpu * spec.tp),
        capacity_tokens=blocks * BLOCK_SIZE_TOKENS,
        capacity_blocks=blocks,
    )


# ------------------------------------------------------------------------------------ build


def build(spec: BuildSpec, data: Path) -> Profile:
    """The composed profile of ``spec`` from the tables under ``data``."""
    spec.check()
    data = Path(data)
    if not data.is_dir():
        raise ProfileError(f"{data}: data directory not found (see ../shared/data/README.md)")
    elementwise, embedding = compose_pointwise(spec, data)
    components: dict[str, Component] = {
        "gemm": compose_gemms(spec, data),
        "elementwise": elementwise,
        "embedding": embedding,
        "lm_head": compose_lm_head(spec, data),
        "prefill_attention": compose_attention(spec, data, "context"),
        "decode_attention": compose_attention(spec, data, "generation"),
        "cpu": compose_cpu(spec, data),
    }
    ar = fit_allreduce(_target(spec), data) if spec.tp > 1 else None
    if ar is not None:
        components["allreduce"] = ar
    cold = fit_cold_start(_target(spec), data)
    # the held-out error of the components fitted to table points (not the bandwidth laws)
    mape = heldout_mape({k: c for k, c in components.items() if len(c.heldout_ape)})
    shape = replace(spec.model.shape, weight_bytes=spec.model.weight_bytes(DTYPES[spec.dtype][1]))
    return assemble(
        spec.name,
        GPUS[spec.gpu],
        spec.tp,
        shape,
        kv_cache(spec),
        components,
        cold,
        mape=mape,
        notes=[
            f"composed from kernel tables by chiron profile build: {spec.model.shape.name} on "
            f"{GPUS[spec.gpu].name}, TP {spec.tp}, weights {spec.dtype}, KV cache {spec.kv_dtype}",
            f"model shape: {spec.model.source}",
            *spec.model.notes,
            *(
                [
                    "fp8 GEMMs from the kernel table's rows as timed, quantisation not fused "
                    "(a study of the composition before stop 50, not a served deployment)"
                ]
                if spec.fp8_unfused
                else []
            ),
        ],
        kv_note=(
            f"KV capacity: {GPU_MEMORY_UTILIZATION} x GPU memory - weights ({spec.dtype} linear "
            f"layers, bf16 embedding, LM head and norms) / TP - "
            f"{RESERVE_BYTES_PER_GPU / 2**30:g} GiB reserve per GPU; KV cache in {spec.kv_dtype}"
        ),
    )


__all__ = [
    "DTYPES",
    "BuildSpec",
    "build",
    "cache_dir",
    "composed",
    "gemm_shapes",
    "kv_cache",
]


# ------------------------------------------------------------------------------------ cache

COMPOSE_VERSION = 2  # bump when the composition changes what it writes


def cache_dir() -> Path:
    """Where composed profiles are cached: ``$CHIRON_CACHE/profiles``, else
    ``$XDG_CACHE_HOME/chiron-gym/profiles`` (``~/.cache/chiron-gym/profiles``)."""
    import os

    env = os.environ.get("CHIRON_CACHE")
    if env:
        return Path(env) / "profiles"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "chiron-gym" / "profiles"


# the code a composed profile depends on (its sources are part of the cache key)
_CODE = (
    "compose",
    "fit",
    "fit_terms",
    "forms",
    "kernels",
    "leastsq",
    "models",
    "parts",
    "profile",
    "targets",
)


def _cache_key(spec: BuildSpec, data: Path) -> str:
    """A digest of what the profile depends on: the build and the shape, the code that composes
    it, and every data file it may read (by path, size and modification time)."""
    import hashlib
    import json

    h = hashlib.sha256()
    h.update(
        json.dumps(
            [
                COMPOSE_VERSION,
                spec.gpu,
                spec.tp,
                spec.dtype,
                spec.kv_dtype,
                spec.fp8_unfused,
                repr(spec.model),
            ]
        ).encode()
    )
    here = Path(__file__).resolve().parent
    for mod in _CODE:
        h.update(hashlib.sha256((here / f"{mod}.py").read_bytes()).digest())
    gpu = GPUS[spec.gpu]
    roots = [
        data / AICONFIGURATOR.local / gpu.aiconfigurator,
        data / VIDUR.local / "compute" / gpu.vidur,
        data / VIDUR.local / "network" / gpu.network,
        data / VIDUR.local / "a100",
        data / "cold-start",
    ]
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for p in files:
            st = p.stat()
            h.update(f"{p.relative_to(data)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def composed(spec: BuildSpec, data: Path, *, use_cache: bool = True) -> Profile:
    """``build(spec, data)``, cached on disk (``cache_dir()``) by a digest of the build, the
    shape, the composing code and the data files, so that a scenario naming a composed profile
    loads it in milliseconds after the first time. A cache that cannot be written is skipped."""
    import json

    spec.check()
    path = cache_dir() / f"{spec.name}-{_cache_key(spec, Path(data))}.json"
    if use_cache and path.is_file():
        try:
            return parse(json.loads(path.read_text()), str(path))
        except (OSError, ValueError, ProfileError):
            pass  # a damaged cache entry is rebuilt
    profile = build(spec, data)
    if use_cache:
        import tempfile

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # a file of its own, then an atomic rename: processes building the same profile at
            # once (vectorised environments, Ray trials) never read a half-written one
            with tempfile.NamedTemporaryFile(
                "w", dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False
            ) as f:
                f.write(dumps(profile.to_document()))
            Path(f.name).replace(path)
        except OSError:
            pass
    return profile
