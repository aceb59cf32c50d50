"""Kernel timings a composed profile reads whatever model it builds (for ``compose.py``).

- ``GemmTable``: AIConfigurator's GEMM latencies at one dtype, looked up at any ``(m, n, k)``;
- ``fit_bandwidth_law``: a bandwidth law of the element-wise ops or the embedding (``LAWS``),
  ``time = const + a * elements per token * tokens``, fitted on every model Vidur profiled on a
  GPU (or on all but one, to validate it on that one: ``compose_check.py``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.profiles.fit_terms import ELEMENTWISE_OPS, _read_csv, _source
from chiron_gym.profiles.forms import Affine
from chiron_gym.profiles.leastsq import FloatArray, round6, wls
from chiron_gym.profiles.parts import ModelShape
from chiron_gym.profiles.profile import ProfileError
from chiron_gym.profiles.targets import GPUS, VIDUR

# Vidur's profiled models per GPU (folders under compute/<gpu>/): the element-wise and embedding
# bandwidth laws are fitted on all of them
VIDUR_MODELS = {
    "a100": ("meta-llama/Llama-2-7b-hf", "meta-llama/Meta-Llama-3-8B", "meta-llama/Llama-2-70b-hf"),
    "h100": ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-70b-hf"),
}


# ------------------------------------------------------------------------------------ GEMMs


class GemmTable:
    """AIConfigurator's GEMM latencies (seconds) at one dtype, looked up at any ``(m, n, k)`` of
    the table's ``m`` grid: bilinear in ``(n, k)`` between grid points, proportional beyond."""

    def __init__(self, df: Any, where: str) -> None:
        if df.empty:
            raise ProfileError(f"{where}: no GEMM rows")
        self.m = sorted(int(v) for v in df["m"].unique())
        self.n = sorted(int(v) for v in df["n"].unique())
        self.k = sorted(int(v) for v in df["k"].unique())
        self.t: dict[tuple[int, int, int], float] = {
            (int(a), int(b), int(c)): float(lat) / 1e3
            for a, b, c, lat in zip(df["m"], df["n"], df["k"], df["latency"], strict=True)
        }
        # A GEMM with more rows is never faster: each (n, k) series is made non-decreasing in m
        # by a running minimum from the largest m down. It removes the table's few artifacts (a
        # point two to seven times its larger neighbour, e.g. H100 bf16 m=4096, n=2560, k=8192)
        # and flattens jitter of a few percent at small m.
        self.artifacts = 0  # points lowered by more than 30%
        for n in self.n:
            for k in self.k:
                low = math.inf
                for m in reversed(self.m):
                    t = self.t.get((m, n, k))
                    if t is None:
                        continue
                    if t > low:
                        self.artifacts += t > 1.3 * low
                        self.t[(m, n, k)] = low
                    else:
                        low = t

    def _point(self, m: int, n: int, k: int) -> float:
        t = self.t.get((m, n, k))
        if t is not None:
            return t
        # a missing corner (the table lacks n = k = 65536): scale from the next k down
        i = self.k.index(k)
        return self._point(m, n, self.k[i - 1]) * k / self.k[i - 1]

    @staticmethod
    def _bracket(grid: list[int], x: float) -> tuple[int, int, float, float]:
        """Two grid values around ``x``, the weight of the upper one, and a proportional factor
        (``x`` over the edge value when outside the grid, else 1)."""
        if x <= grid[0]:
            return grid[0], grid[0], 0.0, x / grid[0]
        if x >= grid[-1]:
            return grid[-1], grid[-1], 0.0, x / grid[-1]
        j = bisect.bisect_left(grid, x)
        lo, hi = grid[j - 1], grid[j]
        return lo, hi, (x - lo) / (hi - lo), 1.0

    def __call__(self, m: int, n: float, k: float) -> float:
        n0, n1, wn, fn = self._bracket(self.n, n)
        k0, k1, wk, fk = self._bracket(self.k, k)
        t = (
            (1 - wn) * (1 - wk) * self._point(m, n0, k0)
            + wn * (1 - wk) * self._point(m, n1, k0)
            + (1 - wn) * wk * self._point(m, n0, k1)
            + wn * wk * self._point(m, n1, k1)
        )
        # below the grid a GEMM is no faster (launch-bound); above it, proportionally slower
        return t * max(fn, 1.0) * max(fk, 1.0)


def fused_fp8(fp8: Any, bf16: Any) -> Any:
    """The fp8 rows with the activation quantisation that vLLM's compiled graphs fuse away.

    AIConfigurator times an fp8 GEMM with its input's dynamic quantisation and launches: at the
    table's thinnest GEMM (``n`` = its smallest) the fp8 row costs more than the bf16 one by an
    amount that grows with ``m x k`` (H100: 7 us at ``m`` = 1, 0.36 ms at ``m`` = 4,096 and
    ``k`` = 8,192), so the raw fp8 table is slower than bf16 at large ``m``. A served model
    quantises inside the norm or activation before the GEMM (vLLM's fusion passes), so that
    extra, a function of ``(m, k)`` alone, is taken off every fp8 row of the same ``(m, k)``;
    the result is never below half the bf16 time (half the bytes, twice the tensor-core rate).
    """
    keys = ["m", "n", "k"]
    both = fp8.merge(bf16[[*keys, "latency"]], on=keys, suffixes=("", "_bf16"))
    thin = both[both["n"] == both["n"].min()]
    over = (thin["latency"] - thin["latency_bf16"]).clip(lower=0.0)
    extra = thin[["m", "k"]].assign(extra=over.to_numpy())
    both = both.merge(extra, on=["m", "k"], how="left").fillna({"extra": 0.0})
    fused = (both["latency"] - both["extra"]).clip(lower=0.0)
    both["latency"] = np.maximum(fused.to_numpy(), 0.5 * both["latency_bf16"].to_numpy())
    return both.drop(columns=["latency_bf16", "extra"])


def _elements_per_token(shape: ModelShape, tp: int) -> float:
    """Activation elements the element-wise ops of a layer touch per token on one GPU: two
    RMSNorms and the residual add over the hidden state, RoPE over the query and key heads, and
    the gated activation (reads gate and up, writes one)."""
    h = shape.heads // tp
    kv = max(1, shape.kv_heads // tp)
    return 3.0 * shape.hidden + (h + kv) * shape.head_dim + 3.0 * shape.ffn / tp


def _vidur_rows(gpu: str, data: Path) -> list[tuple[str, int, Any, str]]:
    """``(model, TP, its mlp.csv rows, path)`` of every model Vidur profiled on ``gpu``."""
    out = []
    for model in VIDUR_MODELS[gpu]:
        rel = f"compute/{GPUS[gpu].vidur}/{model}/mlp.csv"
        df = _read_csv(data / VIDUR.local / rel)
        for tp in sorted(int(v) for v in df["num_tensor_parallel_workers"].unique()):
            out.append((model, tp, df[df["num_tensor_parallel_workers"] == tp], rel))
    return out


@dataclass(frozen=True, slots=True)
class BandwidthLaw:
    """``const + per_element * elements * tokens``, fitted across Vidur's models on one GPU."""

    const_s: float
    per_element_s: float

    def form(self, elements: float) -> Affine:
        return Affine(round6(self.const_s), round6(self.per_element_s * elements))


def fit_bandwidth_law(
    gpu: str,
    data: Path,
    ops: tuple[str, ...],
    elements: Callable[[ModelShape, int], float],
    leave_out: str | None = None,
) -> tuple[BandwidthLaw, list[dict[str, str]]]:
    """The law for the sum of ``ops`` (Vidur op names) with ``elements(shape, tp)`` per token,
    fitted on every (model, TP) of Vidur on ``gpu`` except the model ``leave_out``."""
    rows_a: list[FloatArray] = []
    rows_t: list[FloatArray] = []
    sources: list[dict[str, str]] = []
    for model, tp, df, rel in _vidur_rows(gpu, data):
        if model == leave_out:
            continue
        r = df.iloc[0]
        shape = ModelShape(
            model,
            1,
            int(r["n_head"]),
            int(r["n_kv_head"]),
            int(r["n_embd"]) // int(r["n_head"]),
            int(r["n_embd"]),
            int(r["n_expanded_embd"]),
            int(r["vocab_size"]),
        )
        n = df["num_tokens"].to_numpy(dtype=np.float64)
        t = sum(
            (df[f"time_stats.{op}.median"].to_numpy(dtype=np.float64) for op in ops),
            np.zeros(len(n)),
        )
        rows_a.append(np.c_[np.ones(len(n)), n * elements(shape, tp)])
        rows_t.append(t / 1e3)
        src = _source(VIDUR, rel, data, f"{'+'.join(ops)}: a bandwidth law across models")
        if src not in sources:
            sources.append(src)
    if not rows_a:
        raise ProfileError(f"no Vidur rows for {gpu} to fit {ops}")
    x = wls(np.vstack(rows_a), np.concatenate(rows_t))
    return BandwidthLaw(float(x[0]), float(x[1])), sources


def _embedding_elements(shape: ModelShape, tp: int) -> float:
    return float(shape.hidden)


# the two laws: (field of ``IterationCoefficients``, Vidur's ops, activation elements per token)
LAWS: tuple[tuple[str, tuple[str, ...], Callable[[ModelShape, int], float]], ...] = (
    ("elementwise", ELEMENTWISE_OPS, _elements_per_token),
    ("embedding", ("emb",), _embedding_elements),
)
