"""Each component of ``forms.py`` fitted to its own kernel measurements (for ``fit.py``).

A component reads its rows of Vidur's or AIConfigurator's tables, holds out a random 20% of them
(a fixed seed per profile and component), fits its terms on the rest by least squares on relative
error, and reports the held-out errors of the rounded coefficients that ship.

Needs pandas and pyarrow (``pip install chiron-gym[data]``); loading a profile does not.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chiron_gym.profiles.forms import (
    TILE_TOKENS,
    Affine,
    AllReduce,
    DecodeAttention,
    FlatThenLinear,
    PrefillAttention,
)
from chiron_gym.profiles.leastsq import FloatArray, fit_flat_linear, fit_max, round6, wls
from chiron_gym.profiles.parts import GEMMS
from chiron_gym.profiles.profile import ProfileError
from chiron_gym.profiles.targets import (
    AICONFIGURATOR,
    COLD_START,
    HELDOUT_FRACTION,
    SPLIT_SEED,
    VIDUR,
    VIDUR_CPU,
    Source,
    Target,
)
from chiron_gym.sim import ColdStart

if TYPE_CHECKING:
    import pandas as pd

GEMM_OPS = {
    "qkv": "attn_pre_proj",
    "o": "attn_post_proj",
    "up": "mlp_up_proj",
    "down": "mlp_down_proj",
}
ELEMENTWISE_OPS = ("input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add")
CPU_PARTS = ("schedule", "sampler_e2e", "prepare_inputs_e2e", "process_model_outputs")
QUANTA = (1, 16, 32, 64, 128, 256)
# Operating region of the attention fits: the simulator never batches more sequences than this
# (vLLM's max_num_seqs is at most a few hundred), nor more prefill tokens per iteration.
MAX_DECODE_SEQS = 512
MAX_PREFILL_TOKENS = 16_384
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 2**20  # vLLM CustomAllreduce(max_size=8192 * 1024)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ProfileError(
            "fitting profiles reads CSV and parquet files: pip install 'chiron-gym[data]'"
        ) from e
    return pandas


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ components


@dataclass
class Component:
    """One fitted component: its terms and its held-out error."""

    terms: dict[str, Any]  # field of IterationCoefficients -> its fitted form
    heldout_ape: FloatArray  # absolute percentage errors of the held-out points
    points: int
    sources: list[dict[str, str]]
    notes: list[str]


def _split(target: Target, component: str, n: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    seq = np.random.SeedSequence([SPLIT_SEED, zlib.crc32(f"{target.name}/{component}".encode())])
    rng = np.random.Generator(np.random.PCG64(seq))
    return rng.random(n) < HELDOUT_FRACTION


def _source(src: Source, rel: str, data: Path, used_for: str) -> dict[str, str]:
    path = data / src.local / rel
    return {
        "repository": src.repository,
        "commit": src.commit,
        "path": f"{src.root}/{rel}",
        "sha256": _sha256(path),
        "used_for": used_for,
    }


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ProfileError(f"{path}: profiling data not found (see ../shared/data/README.md)")
    return _pandas().read_csv(path)


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ProfileError(f"{path}: profiling data not found (see ../shared/data/README.md)")
    return _pandas().read_parquet(path)


def _mlp_rows(target: Target, data: Path) -> tuple[pd.DataFrame, str]:
    rel = f"compute/{target.gpu.vidur}/{target.shape.name}/mlp.csv"
    df = _read_csv(data / VIDUR.local / rel)
    df = df[df["num_tensor_parallel_workers"] == target.tp].reset_index(drop=True)
    if df.empty:
        raise ProfileError(f"{data / VIDUR.local / rel}: no rows with TP {target.tp}")
    s = target.shape
    row = df.iloc[0]
    for col, want in (
        ("n_head", s.heads),
        ("n_kv_head", s.kv_heads),
        ("n_embd", s.hidden),
        ("n_expanded_embd", s.ffn),
    ):
        if int(row[col]) != want:
            raise ProfileError(
                f"{data / VIDUR.local / rel}: column {col} = {row[col]}, expected {want} "
                f"for {s.name}"
            )
    return df, rel


def fit_layer_linear(target: Target, data: Path) -> tuple[dict[str, Component], Component]:
    """The four GEMMs and the element-wise ops of a layer, and the embedding (Vidur mlp.csv)."""
    df, rel = _mlp_rows(target, data)
    n = df["num_tokens"].to_numpy(dtype=np.float64)
    test = _split(target, "layer_linear", len(n))
    tr = ~test
    src = [_source(VIDUR, rel, data, "GEMMs, element-wise ops and embedding per layer")]
    forms: dict[str, FlatThenLinear] = {}
    for g in GEMMS:
        t = df[f"time_stats.{GEMM_OPS[g]}.median"].to_numpy(dtype=np.float64) / 1e3
        forms[g] = fit_flat_linear(n[tr], t[tr], QUANTA)
    tel = (
        sum(
            (df[f"time_stats.{op}.median"].to_numpy(dtype=np.float64) for op in ELEMENTWISE_OPS),
            np.zeros(len(n)),
        )
        / 1e3
    )
    x = wls(np.c_[np.ones(tr.sum()), n[tr]], tel[tr])
    el = Affine(round6(x[0]), round6(x[1]))
    total = tel + sum(
        (df[f"time_stats.{GEMM_OPS[g]}.median"].to_numpy(dtype=np.float64) / 1e3 for g in GEMMS),
        np.zeros(len(n)),
    )
    pred = np.array([el(v) + sum(forms[g](v) for g in GEMMS) for v in n[test]])
    layer = Component(
        terms={"gemm": forms, "elementwise": el},
        heldout_ape=np.abs(pred / total[test] - 1.0) * 100.0,
        points=len(n),
        sources=src,
        notes=[],
    )
    temb = df["time_stats.emb.median"].to_numpy(dtype=np.float64) / 1e3
    test_e = _split(target, "embedding", len(n))
    xe = wls(np.c_[np.ones((~test_e).sum()), n[~test_e]], temb[~test_e])
    emb = Affine(round6(xe[0]), round6(xe[1]))
    embedding = Component(
        terms={"embedding": emb},
        heldout_ape=np.abs(np.array([emb(v) for v in n[test_e]]) / temb[test_e] - 1.0) * 100.0,
        points=len(n),
        sources=src,
        notes=[],
    )
    return {"layer_linear": layer}, embedding


def fit_lm_head(target: Target, data: Path) -> Component:
    """The vocabulary GEMM, m = sequences, from AIConfigurator's GEMM table.

    The table has no vocabulary-sized output width, so the flat-then-linear form in m is fitted at
    the two widths around it (16,384 and 65,536, with k = hidden size) and its coefficients are
    interpolated linearly in the width to n = vocab / TP (weight reads and products both scale
    with n).
    """
    rel = f"{target.gpu.aiconfigurator}/gemm/vllm/0.14.0/gemm_perf.parquet"
    df = _read_parquet(data / AICONFIGURATOR.local / rel)
    widths = (16384, 65536)
    df = df[
        (df["gemm_dtype"] == "bfloat16")
        & (df["k"] == target.shape.hidden)
        & (df["n"].isin(widths))
        & (df["m"] <= 4096)
    ].reset_index(drop=True)
    m = df["m"].to_numpy(dtype=np.float64)
    nn = df["n"].to_numpy(dtype=np.float64)
    t = df["latency"].to_numpy(dtype=np.float64) / 1e3
    test = _split(target, "lm_head", len(t))
    forms = {}
    ape: list[float] = []
    for w in widths:
        at = nn == w
        f = fit_flat_linear(m[at & ~test], t[at & ~test], (1,))
        forms[w] = f
        ape += [
            abs(f(v) / tv - 1.0) * 100.0 for v, tv in zip(m[at & test], t[at & test], strict=True)
        ]
    width = target.shape.vocab / target.tp
    x = (width - widths[0]) / (widths[1] - widths[0])
    lo, hi = forms[widths[0]], forms[widths[1]]
    return Component(
        terms={
            "lm_head": FlatThenLinear(
                round6(lo.floor_s + x * (hi.floor_s - lo.floor_s)),
                round6(lo.base_s + x * (hi.base_s - lo.base_s)),
                round6(lo.slope_s + x * (hi.slope_s - lo.slope_s)),
                1,
            )
        },
        heldout_ape=np.asarray(ape),
        points=len(t),
        sources=[_source(AICONFIGURATOR, rel, data, "LM head GEMM")],
        notes=[
            f"LM head: fitted at widths 16384 and 65536 (k={target.shape.hidden}), coefficients "
            f"interpolated to n = vocab / TP = {width:g}; held-out error is that of the two fits"
        ],
    )


def fit_allreduce(target: Target, data: Path) -> Component | None:
    """All-reduce of bf16 activations, as vLLM does it.

    vLLM uses its custom all-reduce (CUDA graphs) for messages up to 8 MiB (``CustomAllreduce``
    ``max_size``) and NCCL above. The custom part is fitted to AIConfigurator's
    ``custom_allreduce_perf`` (``message_size`` counts bf16 elements, so bytes = 2 x size); the
    NCCL part to Vidur's single-node measurements above 8 MiB (below 1 MiB they are too noisy to
    fit: medians of 0.020 to 0.065 ms at neighbouring sizes).
    """
    if target.tp == 1:
        return None
    limit = CUSTOM_ALLREDUCE_MAX_BYTES
    rel_c = f"{target.gpu.aiconfigurator}/comm/vllm/0.14.0/custom_allreduce_perf.parquet"
    dc = _read_parquet(data / AICONFIGURATOR.local / rel_c)
    dc = dc[
        (dc["num_gpus"] == target.tp)
        & (dc["backend"] == "vllm_graph")
        & (dc["allreduce_dtype"] == "bfloat16")
        & (2 * dc["message_size"] <= limit)
    ].reset_index(drop=True)
    rel_n = f"network/{target.gpu.network}/all_reduce.csv"
    dn = _read_csv(data / VIDUR.local / rel_n)
    dn = dn[
        (dn["num_workers"] == target.tp)
        & (dn["devices_per_node"] == target.tp)
        & (dn["size"] > limit)
    ].reset_index(drop=True)
    if dc.empty or dn.empty:
        raise ProfileError(f"{target.name}: no all-reduce rows for {target.tp} GPUs")
    ape: list[float] = []
    forms: list[FlatThenLinear] = []
    for name, b, t in (
        (
            "custom",
            2.0 * dc["message_size"].to_numpy(dtype=np.float64),
            dc["latency"].to_numpy(dtype=np.float64) / 1e3,
        ),
        (
            "nccl",
            dn["size"].to_numpy(dtype=np.float64),
            dn["time_stats.all_reduce.median"].to_numpy(dtype=np.float64) / 1e3,
        ),
    ):
        test = _split(target, f"allreduce/{name}", len(t))
        f = fit_flat_linear(b[~test], t[~test], (1,))
        forms.append(f)
        ape += [abs(f(v) / tv - 1.0) * 100.0 for v, tv in zip(b[test], t[test], strict=True)]
    return Component(
        terms={"allreduce": AllReduce(forms[0], forms[1], limit)},
        heldout_ape=np.asarray(ape),
        points=len(dc) + len(dn),
        sources=[
            _source(AICONFIGURATOR, rel_c, data, f"all-reduce up to 8 MiB, {target.tp} GPUs"),
            _source(VIDUR, rel_n, data, f"all-reduce above 8 MiB (NCCL), {target.tp} GPUs"),
        ],
        notes=[
            "all-reduce: vLLM custom kernel up to 8 MiB (AIConfigurator, message_size in "
            "elements), NCCL above (Vidur)"
        ],
    )


def _attention_rows(
    target: Target, data: Path, table: str, kv_dtype: str = "bfloat16"
) -> tuple[pd.DataFrame, str, int, int]:
    """AIConfigurator's ``table`` attention rows at the target's query heads per GPU and KV-cache
    dtype; their path, and the query and KV heads per GPU."""
    rel = f"{target.gpu.aiconfigurator}/attention/vllm/0.14.0/{table}_attention_perf.parquet"
    df = _read_parquet(data / AICONFIGURATOR.local / rel)
    h, kv = target.shape.heads // target.tp, target.shape.kv_heads // target.tp
    return df[(df["num_heads"] == h) & (df["kv_cache_dtype"] == kv_dtype)], rel, h, kv


def fit_prefill_attention(target: Target, data: Path, kv_dtype: str = "bfloat16") -> Component:
    """Prefill attention (AIConfigurator context attention, vLLM 0.14 FlashAttention)."""
    df, rel, h, kv = _attention_rows(target, data, "context", kv_dtype)
    df = df[
        (df["num_key_value_heads"] == kv) & (df["batch_size"] * df["isl"] <= MAX_PREFILL_TOKENS)
    ].reset_index(drop=True)
    if df.empty:
        raise ProfileError(f"{data / AICONFIGURATOR.local / rel}: no rows for {h}/{kv} heads")
    b = df["batch_size"].to_numpy(dtype=np.float64)
    s = df["isl"].to_numpy(dtype=np.float64)
    t = df["latency"].to_numpy(dtype=np.float64) / 1e3
    feats = np.c_[np.ones(len(t)), b, b * s, b * s * (s + 1) / 2, b * np.ceil(s / TILE_TOKENS)]
    test = _split(target, "prefill_attention", len(t))
    x = [round6(v) for v in wls(feats[~test], t[~test])]
    form = PrefillAttention(*x)
    pred = np.array(
        [form([int(si)] * int(bi), [0] * int(bi)) for bi, si in zip(b[test], s[test], strict=True)]
    )
    return Component(
        terms={"prefill_attention": form},
        heldout_ape=np.abs(pred / t[test] - 1.0) * 100.0,
        points=len(t),
        sources=[_source(AICONFIGURATOR, rel, data, f"prefill attention, {h} q / {kv} kv heads")],
        notes=[f"prefill attention fitted where batch x prompt <= {MAX_PREFILL_TOKENS} tokens"],
    )


def fit_decode_attention(target: Target, data: Path, kv_dtype: str = "bfloat16") -> Component:
    """Decode attention (AIConfigurator generation attention)."""
    df, rel, h, kv = _attention_rows(target, data, "generation", kv_dtype)
    df = df[df["batch_size"] <= MAX_DECODE_SEQS]
    notes = []
    kv_used = kv
    if not (df["num_key_value_heads"] == kv).any():
        kv_used = int(df["num_key_value_heads"].max())
        notes.append(
            f"decode attention: the table has no {h} q / {kv} kv-head rows; fitted on {h}/{kv_used}"
            f" and the per-context-token cost scaled by {kv}/{kv_used} (KV bytes read); the floor "
            f"is kept; the held-out error is that of the {h}/{kv_used} fit"
        )
    df = df[df["num_key_value_heads"] == kv_used].reset_index(drop=True)
    b = df["batch_size"].to_numpy(dtype=np.float64)
    ctx = b * df["step"].to_numpy(dtype=np.float64)
    t = df["latency"].to_numpy(dtype=np.float64) / 1e3
    test = _split(target, "decode_attention", len(t))
    tr = ~test
    seqs = sorted(int(v) for v in np.unique(b))
    cols: dict[str, list[float]] = {"floor_s": [], "base_s": [], "per_context_token_s": []}
    for bb in seqs:
        m = tr & (b == bb)
        one = np.ones((m.sum(), 1))
        lo, hi = fit_max(one, np.c_[np.ones(m.sum()), ctx[m]], ctx[m], t[m])
        cols["floor_s"].append(round6(lo[0]))
        cols["base_s"].append(round6(hi[0]))
        cols["per_context_token_s"].append(round6(hi[1]))
    fitted = DecodeAttention(tuple(seqs), *(tuple(v) for v in cols.values()))
    pred = np.array([fitted(int(bi), ci) for bi, ci in zip(b[test], ctx[test], strict=True)])
    scale = kv / kv_used
    per_token = tuple(round6(v * scale) for v in cols["per_context_token_s"])
    return Component(
        terms={"decode_attention": replace(fitted, per_context_token_s=per_token)},
        heldout_ape=np.abs(pred / t[test] - 1.0) * 100.0,
        points=len(t),
        sources=[
            _source(AICONFIGURATOR, rel, data, f"decode attention, {h} q / {kv_used} kv heads")
        ],
        notes=[*notes, f"decode attention fitted for batches up to {MAX_DECODE_SEQS} sequences"],
    )


def fit_cpu(target: Target, data: Path) -> Component:
    """Per-iteration CPU time of the engine (Vidur cpu_overheads.csv, A100 host)."""
    rel = "a100/cpu_overheads.csv"
    df = _read_csv(data / VIDUR_CPU.local / rel)
    df = df[
        (df["model_name"] == target.cpu_model) & (df["tensor_parallel_degree"] == target.tp)
    ].reset_index(drop=True)
    if df.empty:
        raise ProfileError(
            f"{data / VIDUR_CPU.local / rel}: no rows for {target.cpu_model} TP {target.tp}"
        )
    b = df["batch_size"].to_numpy(dtype=np.float64)
    t = (
        sum((df[f"{p}_median"].to_numpy(dtype=np.float64) for p in CPU_PARTS), np.zeros(len(b)))
        / 1e3
    )
    test = _split(target, "cpu", len(t))
    x = [round6(v) for v in wls(np.c_[np.ones((~test).sum()), b[~test]], t[~test])]
    form = Affine(x[0], x[1])
    notes = [f"CPU overhead: {' + '.join(CPU_PARTS)} medians, measured on an A100 host"]
    if target.cpu_model != target.shape.name or target.gpu.vidur != "a100":
        notes.append(f"CPU overhead taken from {target.cpu_model} on A100 (the only host measured)")
    return Component(
        terms={"cpu": form},
        heldout_ape=np.abs(np.array([form(v) for v in b[test]]) / t[test] - 1.0) * 100.0,
        points=len(t),
        sources=[_source(VIDUR_CPU, rel, data, "CPU overhead per iteration")],
        notes=notes,
    )


def fit_cold_start(target: Target, data: Path) -> tuple[ColdStart, list[float], str]:
    """Lognormal start-up delay from the compiled observations for this model size; the
    observations and a line naming them."""
    rel = "cold_start_observations.csv"
    df = _read_csv(data / COLD_START.local / rel)
    model, phase = target.cold_start_rows
    rows = df[(df["model"] == model) & (df["phase"] == phase)]
    if len(rows) < 2:
        raise ProfileError(
            f"{data / COLD_START.local / rel}: fewer than 2 rows for {model}/{phase}"
        )
    obs = rows["seconds"].to_numpy(dtype=np.float64)
    logs = np.log(obs)
    refs = sorted(set(rows["source_ref"].astype(str)))
    return (
        ColdStart("lognormal", round6(float(np.exp(logs.mean()))), round6(float(logs.std(ddof=1)))),
        [float(v) for v in obs],
        f"{COLD_START.local}/{rel}: model {model!r}, phase {phase!r} ({'; '.join(refs)})",
    )


def cold_start_source(data: Path) -> dict[str, str]:
    """The provenance entry of the cold-start observations."""
    rel = "cold_start_observations.csv"
    return {
        "repository": COLD_START.repository,
        "commit": COLD_START.commit,
        "path": f"shared/data/{COLD_START.root}/{rel}",
        "sha256": _sha256(data / COLD_START.local / rel),
        "used_for": "cold-start distribution",
    }
