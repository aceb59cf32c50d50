"""Composed profiles checked without fitting them to anything (``chiron profile build --check``).

For each shipped model/GPU pair (``targets.TARGETS``) the profile composed from the kernel tables
(``compose.py``, bf16) is put beside what was measured and fitted for that model:

- **per component against Vidur's per-operator measurements** of that model (``mlp.csv``, which the
  composer does not read for GEMMs): each GEMM, the element-wise ops and the embedding, and the
  layer's GEMMs + element-wise ops together (``layer_linear``); the element-wise and embedding
  laws are refitted without the model they are checked on (leave one model out);
- **per iteration against the fitted profile**: decode iterations (1-256 sequences, 256-4,096
  tokens of context each), prefill chunks (64-8,192 tokens) and mixed iterations, none of which
  any fit chose;
- **end to end** against LLM-Inference-Bench's vLLM batch latencies and Splitwise's Llama-2-70B
  runs (``compare.py``), beside the fitted profiles' figures.

The same tables for FP8 (H100: fp8 GEMMs, fp8 KV cache) where the data allow: there is no FP8
per-operator measurement to check against, so only the composed/bf16 ratio is shown.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.profiles.compare import compare_all
from chiron_gym.profiles.compose import BuildSpec, build
from chiron_gym.profiles.fit import dumps
from chiron_gym.profiles.fit_terms import GEMM_OPS, _mlp_rows
from chiron_gym.profiles.kernels import LAWS, fit_bandwidth_law
from chiron_gym.profiles.leastsq import mape_of
from chiron_gym.profiles.models import ModelSpec
from chiron_gym.profiles.parts import GEMMS
from chiron_gym.profiles.profile import Profile, load
from chiron_gym.profiles.targets import TARGETS, Target
from chiron_gym.sim import BatchComposition

DECODE_SEQS = (1, 4, 16, 64, 256)
DECODE_CONTEXTS = (256, 1024, 4096)
PREFILL_CHUNKS = (64, 256, 1024, 2048, 4096, 8192)


def _spec(target: Target, dtype: str = "bf16", kv_dtype: str = "bf16") -> BuildSpec:
    gpu = "a100" if target.gpu.vidur == "a100" else "h100"
    model = ModelSpec(target.shape, False, f"the shape of the shipped profile {target.name}")
    return BuildSpec(model, gpu, target.tp, dtype, kv_dtype)


def iteration_points() -> list[tuple[str, BatchComposition]]:
    """``(kind, batch)``: the iterations both profiles are timed on."""
    out: list[tuple[str, BatchComposition]] = []
    for s in DECODE_SEQS:
        for c in DECODE_CONTEXTS:
            out.append(("decode", BatchComposition.with_decodes([], [], [c] * s)))
    for n in PREFILL_CHUNKS:
        out.append(("prefill", BatchComposition.with_decodes([n], [0], [])))
    for n, s in ((256, 16), (512, 32), (2048, 64)):
        out.append(("mixed", BatchComposition.with_decodes([n], [1024], [1024] * s)))
    return out


@dataclass(frozen=True, slots=True)
class Check:
    """One composed profile beside its measured model: MAPE (%) per component and kind."""

    profile: str
    vs_vidur: dict[str, float]  # component -> MAPE against Vidur's per-operator medians
    vs_fitted: dict[str, float]  # iteration kind -> MAPE against the fitted profile
    vs_fitted_max: float  # the largest per-iteration error, %
    composed_over_fitted: float  # median ratio of iteration times


def check_target(target: Target, data: Path) -> tuple[Check, Profile]:
    composed = build(_spec(target), data)
    fitted = load(target.name)
    df, _ = _mlp_rows(target, data)
    n = df["num_tokens"].to_numpy(dtype=np.float64)
    it = composed.iteration
    vs: dict[str, float] = {}
    measured_linear = np.zeros(len(n))
    predicted_linear = np.zeros(len(n))
    for g in GEMMS:
        t = df[f"time_stats.{GEMM_OPS[g]}.median"].to_numpy(dtype=np.float64) / 1e3
        pred = np.array([it.gemm[g](v) for v in n])
        vs[f"gemm_{g}"] = mape_of(pred, t)
        measured_linear += t
        predicted_linear += pred
    gpu = "a100" if target.gpu.vidur == "a100" else "h100"
    for field, ops, elements in LAWS:
        law, _ = fit_bandwidth_law(gpu, data, ops, elements, leave_out=target.shape.name)
        form = law.form(elements(target.shape, target.tp))
        t = sum(
            (df[f"time_stats.{op}.median"].to_numpy(dtype=np.float64) for op in ops),
            np.zeros(len(n)),
        )
        t = t / 1e3
        pred = np.array([form(v) for v in n])
        vs[field] = mape_of(pred, t)
        if field == "elementwise":
            measured_linear += t
            predicted_linear += pred
    vs["layer_linear"] = mape_of(predicted_linear, measured_linear)
    pc, pf = composed.perf_model(), fitted.perf_model()
    by_kind: dict[str, list[float]] = {}
    ratios = []
    for kind, batch in iteration_points():
        r = pc.iteration_time_s(batch) / pf.iteration_time_s(batch)
        ratios.append(r)
        by_kind.setdefault(kind, []).append(abs(r - 1.0) * 100.0)
    vs_fitted = {k: float(np.mean(v)) for k, v in by_kind.items()}
    vs_fitted["all"] = float(np.mean([e for v in by_kind.values() for e in v]))
    return (
        Check(
            target.name,
            vs,
            vs_fitted,
            float(max(abs(r - 1.0) for r in ratios) * 100.0),
            float(np.median(ratios)),
        ),
        composed,
    )


def check_all(data: Path) -> tuple[list[Check], list[Any], list[Any]]:
    """The checks of every shipped pair; the end-to-end comparisons of the composed and of the
    fitted profiles (``compare.py``)."""
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in TARGETS:
            c, composed = check_target(target, data)
            checks.append(c)
            (Path(tmp) / f"{target.name}.json").write_text(dumps(composed.to_document()))
        e2e_composed = compare_all(data, Path(tmp))
    return checks, e2e_composed, compare_all(data)


def fp8_ratios(data: Path) -> list[tuple[str, float, float, float]]:
    """H100 pairs: composed fp8 (weights; weights + KV) over composed bf16, median over the
    iteration points, and the KV capacity ratio."""
    out = []
    for target in TARGETS:
        if target.gpu.vidur != "h100":
            continue
        base = build(_spec(target), data)
        w8 = build(_spec(target, "fp8"), data)
        both = build(_spec(target, "fp8", "fp8"), data)
        pts = iteration_points()
        r1 = np.median(
            [
                w8.perf_model().iteration_time_s(b) / base.perf_model().iteration_time_s(b)
                for _, b in pts
            ]
        )
        r2 = np.median(
            [
                both.perf_model().iteration_time_s(b) / base.perf_model().iteration_time_s(b)
                for _, b in pts
            ]
        )
        out.append(
            (target.name, float(r1), float(r2), both.kv.capacity_tokens / base.kv.capacity_tokens)
        )
    return out


def tables(data: Path) -> str:
    """The markdown of ``docs/profiles.md``'s composed-profile section (the figures)."""
    checks, e2e_c, e2e_f = check_all(data)
    cols = [
        "gemm_qkv",
        "gemm_o",
        "gemm_up",
        "gemm_down",
        "elementwise",
        "embedding",
        "layer_linear",
    ]
    lines = [
        "Per component, composed against Vidur's per-operator medians of the same model (MAPE %):",
        "",
        "| profile | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for c in checks:
        lines.append(f"| {c.profile} | " + " | ".join(f"{c.vs_vidur[k]:.1f}" for k in cols) + " |")
    lines += [
        "",
        "Per iteration, composed against the fitted profile (MAPE %, the largest error, the median "
        "ratio composed / fitted):",
        "",
        "| profile | decode | prefill | mixed | all | largest | composed / fitted |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        f = c.vs_fitted
        lines.append(
            f"| {c.profile} | {f['decode']:.1f} | {f['prefill']:.1f} | {f['mixed']:.1f} | "
            f"{f['all']:.1f} | {c.vs_fitted_max:.1f} | {c.composed_over_fitted:.3f} |"
        )
    lines += [
        "",
        "End to end (MAPE %, median predicted / measured), composed beside fitted:",
        "",
        "| profile | source | quantity | points | composed | fitted |",
        "|---|---|---|---|---|---|",
    ]
    for a, b in zip(e2e_c, e2e_f, strict=True):
        lines.append(
            f"| {a.profile} | {a.source} | {a.quantity} | {a.points} | "
            f"{a.mape_pct:.1f} ({a.median_ratio:.2f}) | {b.mape_pct:.1f} ({b.median_ratio:.2f}) |"
        )
    lines += [
        "",
        "FP8 on H100 (composed fp8 over composed bf16; no FP8 measurement of these models to check "
        "against):",
        "",
        "| profile | fp8 weights: iteration time | + fp8 KV cache | KV capacity |",
        "|---|---|---|---|",
    ]
    for name, r1, r2, kv in fp8_ratios(data):
        lines.append(f"| {name} | {r1:.2f}x | {r2:.2f}x | {kv:.2f}x |")
    return "\n".join(lines)


__all__ = ["Check", "check_all", "check_target", "fp8_ratios", "iteration_points", "tables"]
