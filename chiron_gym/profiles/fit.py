"""Fit profiles from the raw profiling data (``chiron profile fit``).

Every component of ``forms.py`` is fitted to its own measurements by least squares on relative
error (``fit_terms.py``). A random 20% of each component's points (a fixed seed per profile and
component) is held out: coefficients are fitted on the rest, and the mean absolute percentage error
(MAPE) on the held-out points, computed with the rounded coefficients that ship, is stored in the
profile.

Needs pandas and pyarrow (``pip install chiron-gym[data]``); loading a profile does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.profiles.fit_terms import (
    Component,
    cold_start_source,
    fit_allreduce,
    fit_cold_start,
    fit_cpu,
    fit_decode_attention,
    fit_layer_linear,
    fit_lm_head,
    fit_prefill_attention,
)
from chiron_gym.profiles.leastsq import round6
from chiron_gym.profiles.parts import IterationCoefficients, KvCache, ModelShape, Record
from chiron_gym.profiles.profile import Profile, ProfileError, parse
from chiron_gym.profiles.targets import (
    BLOCK_SIZE_TOKENS,
    GPU_MEMORY_UTILIZATION,
    HELDOUT_FRACTION,
    RESERVE_BYTES_PER_GPU,
    SPLIT_SEED,
    TARGETS,
    Gpu,
    Target,
)
from chiron_gym.sim import ColdStart


def fit_profile(target: Target, data: Path) -> dict[str, Any]:
    """The profile document of ``target`` (a JSON-ready dict)."""
    s = target.shape
    layer, embedding = fit_layer_linear(target, data)
    components: dict[str, Component] = {
        **layer,
        "embedding": embedding,
        "lm_head": fit_lm_head(target, data),
        "prefill_attention": fit_prefill_attention(target, data),
        "decode_attention": fit_decode_attention(target, data),
        "cpu": fit_cpu(target, data),
    }
    ar = fit_allreduce(target, data)
    if ar is not None:
        components["allreduce"] = ar
    kv_bytes_per_token = s.kv_bytes_per_token(2)
    per_gpu_free = (
        GPU_MEMORY_UTILIZATION * target.gpu.memory_bytes
        - s.weight_bytes / target.tp
        - RESERVE_BYTES_PER_GPU
    )
    if per_gpu_free <= 0:
        raise ProfileError(f"{target.name}: the weights do not fit in GPU memory")
    tokens = int(per_gpu_free // (kv_bytes_per_token / target.tp))
    blocks = tokens // BLOCK_SIZE_TOKENS
    kv = KvCache(
        block_size_tokens=BLOCK_SIZE_TOKENS,
        gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        reserve_bytes=RESERVE_BYTES_PER_GPU * target.tp,
        bytes_per_token=kv_bytes_per_token,
        capacity_tokens=blocks * BLOCK_SIZE_TOKENS,
        capacity_blocks=blocks,
    )
    mape = heldout_mape(components)
    profile = assemble(
        target.name,
        target.gpu,
        target.tp,
        s,
        kv,
        components,
        fit_cold_start(target, data),
        mape=mape,
        kv_note=(
            f"KV capacity: {GPU_MEMORY_UTILIZATION} x GPU memory - weights / TP - "
            f"{RESERVE_BYTES_PER_GPU / 2**30:g} GiB reserve per GPU (activations, CUDA graphs)"
        ),
        more_sources=[cold_start_source(data)],
    )
    return profile.to_document()


def heldout_mape(components: dict[str, Component]) -> dict[str, float]:
    """Held-out MAPE (%) of each component, and ``pooled`` over all their held-out points."""
    mape = {name: round6(float(np.mean(c.heldout_ape))) for name, c in components.items()}
    pooled = np.concatenate([c.heldout_ape for c in components.values()])
    mape["pooled"] = round6(float(np.mean(pooled)))
    return mape


def assemble(
    name: str,
    gpu: Gpu,
    tp: int,
    model: ModelShape,
    kv: KvCache,
    components: dict[str, Component],
    cold: tuple[ColdStart, list[float], str],
    *,
    mape: dict[str, float],
    notes: Sequence[str] = (),
    kv_note: str,
    more_sources: Sequence[dict[str, str]] = (),
) -> Profile:
    """The profile of ``components`` (fitted here, or composed by ``compose.py``): their terms
    (no all-reduce unless one of them has it), their sources (each once, then
    ``more_sources``), ``notes`` then theirs then ``kv_note``, and the cold start of
    ``fit_cold_start``; held out as ``fit_terms`` splits."""
    terms: dict[str, Any] = {"allreduce": None}
    sources: list[dict[str, str]] = []
    all_notes = list(notes)
    for c in components.values():
        terms.update(c.terms)
        for src in c.sources:
            if src not in sources:
                sources.append(src)
        all_notes.extend(c.notes)
    all_notes.append(kv_note)
    cold_start, observations, cold_source = cold
    return Profile(
        name=name,
        gpu_name=gpu.name,
        gpu_memory_bytes=gpu.memory_bytes,
        tensor_parallel=tp,
        model=model,
        kv=kv,
        iteration=IterationCoefficients(**terms),
        cold_start=cold_start,
        record=Record(
            sources=[*sources, *more_sources],
            notes=all_notes,
            heldout_fraction=HELDOUT_FRACTION,
            seed=SPLIT_SEED,
            mape_pct=mape,
            points={k: c.points for k, c in components.items()},
            cold_start_observations_s=observations,
            cold_start_source=cold_source,
        ),
    )


def dumps(doc: dict[str, Any]) -> str:
    """The canonical text of a profile file (stable across runs: sorted keys, fixed indent)."""
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def fit_all(data: Path, names: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """``(file name, text)`` of every profile (or of ``names``), each validated by the loader."""
    data = Path(data)
    if not data.is_dir():
        raise ProfileError(f"{data}: data directory not found")
    for target in TARGETS:
        if names and target.name not in names:
            continue
        doc = fit_profile(target, data)
        text = dumps(doc)
        parse(json.loads(text), f"{target.name}.json")  # what ships must load
        yield f"{target.name}.json", text


def write_all(data: Path, out: Path, names: list[str] | None = None) -> list[Path]:
    """Fit and write the profiles into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in fit_all(data, names):
        p = out / fname
        p.write_text(text)
        written.append(p)
    return written


def mape_table(docs: list[dict[str, Any]]) -> str:
    """Markdown table of held-out MAPE (%) per profile and component."""
    cols = [
        "layer_linear",
        "embedding",
        "lm_head",
        "allreduce",
        "prefill_attention",
        "decode_attention",
        "cpu",
        "pooled",
    ]
    lines = ["| profile | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for d in docs:
        m = d["validation"]["mape_pct"]
        cells = [("-" if c not in m else f"{m[c]:.2f}") for c in cols]
        lines.append(f"| {d['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
