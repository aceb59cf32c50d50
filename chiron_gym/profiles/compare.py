"""Out-of-sample checks: shipped profiles against other people's end-to-end measurements.

- splitwise-sim ``perf_model.csv``: Llama-2-70B prefill time of a batch and decode iteration time,
  A100 / H100 at TP 4 (their own measurements, a different engine);
- LLM-Inference-Bench ``All_results.csv``: vLLM batch latency (input = output length) of
  Llama-2-7B, Llama-3-8B and Llama-2-70B on A100 / H100.

Predictions come from the profile's ``PerfModel`` alone; nothing here is fitted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.profiles.fit_terms import _pandas
from chiron_gym.profiles.profile import Profile, ProfileError, load
from chiron_gym.profiles.targets import LLM_INFERENCE_BENCH, SPLITWISE
from chiron_gym.sim import BatchComposition


@dataclass(frozen=True, slots=True)
class Comparison:
    """MAPE of one profile against one external table."""

    profile: str
    source: str
    quantity: str
    points: int
    mape_pct: float
    median_ratio: float  # predicted / measured


def _prefill_s(p: Profile, batch: int, prompt: int) -> float:
    comp = BatchComposition.with_decodes([prompt] * batch, [0] * batch, [])
    return p.perf_model().iteration_time_s(comp)


def _decode_s(p: Profile, batch: int, context: int) -> float:
    comp = BatchComposition.with_decodes([], [], [context] * batch)
    return p.perf_model().iteration_time_s(comp)


def _batch_latency_s(p: Profile, batch: int, length: int, chunk: int) -> float:
    """Prefill ``batch`` prompts of ``length`` in chunks of ``chunk`` tokens, then decode."""
    total = 0.0
    remaining = batch * length
    while remaining > 0:
        n = min(chunk, remaining)
        total += p.perf_model().iteration_time_s(BatchComposition.with_decodes([n], [0], []))
        remaining -= n
    for k in range(1, length):
        total += _decode_s(p, batch, length + k)
    return total


def _summary(
    name: str, source: str, quantity: str, pred: list[float], meas: list[float]
) -> Comparison:
    r = np.asarray(pred) / np.asarray(meas)
    return Comparison(
        name, source, quantity, len(r), float(np.mean(np.abs(r - 1)) * 100), float(np.median(r))
    )


SPLITWISE_PROFILES = {
    ("a100-80gb", 4): "a100-llama2-70b-tp4",
    ("h100-80gb", 4): "h100-llama2-70b-tp4",
}
BENCH_PROFILES = {
    ("Nvidia A100 GPU", "meta-llama/Llama-2-7b-hf", 1): "a100-llama2-7b-tp1",
    ("Nvidia A100 GPU", "meta-llama/Meta-Llama-3-8B", 1): "a100-llama3-8b-tp1",
    ("Nvidia A100 GPU", "meta-llama/Llama-2-70b-hf", 4): "a100-llama2-70b-tp4",
    ("Nvidia H100 GPU", "meta-llama/Llama-2-7b-hf", 1): "h100-llama2-7b-tp1",
    ("Nvidia H100 GPU", "meta-llama/Llama-2-70b-hf", 4): "h100-llama2-70b-tp4",
}


def compare_all(data: Path, profile_dir: Path | None = None) -> list[Comparison]:
    """Every comparison the data allows."""
    pd = _pandas()

    def get(name: str) -> Profile:
        return load(profile_dir / f"{name}.json") if profile_dir else load(name)

    out: list[Comparison] = []
    sw_path = data / SPLITWISE.local / "perf_model.csv"
    if not sw_path.is_file():
        raise ProfileError(f"{sw_path}: not found")
    sw = pd.read_csv(sw_path)
    for (hw, tp), name in SPLITWISE_PROFILES.items():
        rows = sw[
            (sw["model"] == "llama2-70b") & (sw["hardware"] == hw) & (sw["tensor_parallel"] == tp)
        ]
        p = get(name)
        pre = [
            _prefill_s(p, int(b), int(s))
            for b, s in zip(rows["batch_size"], rows["prompt_size"], strict=True)
        ]
        out.append(
            _summary(
                name, "splitwise-sim", "prefill of the batch", pre, list(rows["prompt_time"] / 1e3)
            )
        )
        dec = [
            _decode_s(p, int(b), int(s + t // 2))
            for b, s, t in zip(
                rows["batch_size"], rows["prompt_size"], rows["token_size"], strict=True
            )
        ]
        out.append(
            _summary(name, "splitwise-sim", "decode iteration", dec, list(rows["token_time"] / 1e3))
        )
    bench_path = data / LLM_INFERENCE_BENCH.local / "All_results.csv"
    if not bench_path.is_file():
        raise ProfileError(f"{bench_path}: not found")
    bench = pd.read_csv(bench_path)
    for (hw, model, gpus), name in BENCH_PROFILES.items():
        rows = bench[
            (bench["Framework"] == "vLLM")
            & (bench["Hardware"] == hw)
            & (bench["Model"] == model)
            & (bench["Num of Hardware"] == gpus)
        ]
        if rows.empty:
            continue
        p = get(name)
        pred = [
            _batch_latency_s(p, int(b), int(n), chunk=8192)
            for b, n in zip(rows["Batch Size"], rows["Input Output Length"], strict=True)
        ]
        out.append(
            _summary(
                name,
                "LLM-Inference-Bench (vLLM)",
                "batch latency, in = out",
                pred,
                list(rows["Latency"]),
            )
        )
    return out


def comparison_table(rows: list[Comparison]) -> str:
    """Markdown table of the comparisons."""
    lines = [
        "| profile | source | quantity | points | MAPE % | median predicted / measured |",
        "|---|---|---|---|---|---|",
    ]
    for c in rows:
        lines.append(
            f"| {c.profile} | {c.source} | {c.quantity} | {c.points} | "
            f"{c.mape_pct:.1f} | {c.median_ratio:.2f} |"
        )
    return "\n".join(lines)


def as_dicts(rows: list[Comparison]) -> list[dict[str, Any]]:
    """JSON-ready rows."""
    return [dataclasses.asdict(c) for c in rows]
