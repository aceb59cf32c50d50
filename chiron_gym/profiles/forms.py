"""The functional form of one engine iteration's time, component by component.

For a batch of ``n`` tokens in ``s`` sequences (``s_p`` of them prefilling chunks, ``s_d``
decoding), on a model of ``L`` layers split over ``TP`` GPUs::

    T = cpu(s) + embedding(n) + lm_head(s)
        + L * ( sum_g gemm_g(n) + elementwise(n) + 2 * allreduce(n * hidden * 2 bytes)
                + [s_p > 0] * prefill_attention(chunks, contexts)
                + [s_d > 0] * decode_attention(s_d, sum of decode contexts) )

Each term is fitted to kernel measurements (``chiron_gym/profiles/fit_terms.py``):

- ``gemm_g(n) = max(floor, base + slope * ceil(n / q) * q)`` for each of the four GEMMs of a
  layer (QKV, O, MLP up, MLP down): flat while weight reads dominate (memory-bound), then linear in
  tokens (compute-bound), with the tile quantum ``q`` that makes the wave steps of real kernels;
- ``elementwise(n)``, ``embedding(n)`` and ``cpu(s)`` are affine;
- ``allreduce(b)``: ``max(floor, base + per_byte * b)`` for vLLM's custom all-reduce up to its
  8 MiB limit, and another such form for NCCL above it (absent at TP 1);
- ``prefill_attention = const + per_seq * s_p + per_token * sum(c) + per_pair * sum(pairs)
  + per_tile * sum(ceil(c / 128))`` with ``pairs = c * (context + (c + 1) / 2)``, the query-key
  products of a causal chunk ``c`` on top of ``context`` cached tokens;
- ``decode_attention = max(floor(s_d), base(s_d) + per_context_token(s_d) * sum(ctx))``:
  linear in the summed context (every cached token is read once) above a launch-bound floor, with
  coefficients tabulated over the number of sequences (kernel heuristics change with it);
- ``lm_head(s) = max(floor, base + per_seq * s)``: the vocabulary GEMM on one token per sequence.

All values are seconds. The decode term is piecewise affine in the summed context, which is what
the simulator's fast-forward needs (``PerfModel.decode_cost``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from mypy_extensions import mypyc_attr

TILE_TOKENS = 128  # query tile of the prefill attention kernel (FlashAttention)


# The forms' arithmetic, as functions of their coefficients: the forms' ``__call__`` and the
# compiled iteration-time model (``perf.py``, which keeps the coefficients as plain attributes)
# both call these, so the two agree bit for bit.


def flat_then_linear(floor: float, base: float, slope: float, quantum: int, x: float) -> float:
    """``max(floor, base + slope * ceil(x / quantum) * quantum)``."""
    xq = x if quantum == 1 else math.ceil(x / quantum) * quantum
    return max(floor, base + slope * xq)


def prefill_attention_s(c: list[float], chunks: list[int], contexts: list[int]) -> float:
    """``PrefillAttention`` of coefficients ``c`` = (const, per_seq, per_token, per_pair,
    per_tile)."""
    tokens = 0
    pairs = 0.0
    tiles = 0
    for i in range(len(chunks)):
        ch = chunks[i]
        tokens += ch
        pairs += ch * (contexts[i] + (ch + 1) / 2.0)
        tiles += -(-ch // TILE_TOKENS)
    return c[0] + c[1] * len(chunks) + c[2] * tokens + c[3] * pairs + c[4] * tiles


def decode_piece(
    floor: float, base: float, slope: float, context_sum: float
) -> tuple[float, float, float]:
    """``DecodeAttention.piece_of``: ``(base, slope, valid_until)`` in force at ``context_sum``."""
    if slope <= 0.0:
        return max(floor, base), 0.0, math.inf
    crossover = (floor - base) / slope
    if context_sum <= crossover:
        return floor, 0.0, crossover
    return base, slope, math.inf


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class Affine:
    """``const + slope * x``."""

    const_s: float
    slope_s: float

    def __call__(self, x: float) -> float:
        return self.const_s + self.slope_s * x


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class FlatThenLinear:
    """``max(floor, base + slope * ceil(x / quantum) * quantum)``."""

    floor_s: float
    base_s: float
    slope_s: float
    quantum: int = 1

    def __call__(self, x: float) -> float:
        return flat_then_linear(self.floor_s, self.base_s, self.slope_s, self.quantum, x)


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class AllReduce:
    """vLLM's all-reduce: its custom kernel up to ``custom_max_bytes``, NCCL above."""

    custom: FlatThenLinear
    nccl: FlatThenLinear
    custom_max_bytes: int = 8 * 2**20  # vLLM CustomAllreduce max_size

    def __call__(self, nbytes: float) -> float:
        return self.custom(nbytes) if nbytes <= self.custom_max_bytes else self.nccl(nbytes)


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class PrefillAttention:
    """Per-layer time of the prefill attention of one iteration's chunks."""

    const_s: float
    per_seq_s: float
    per_token_s: float
    per_pair_s: float
    per_tile_s: float

    @property
    def coefficients(self) -> list[float]:
        """``(const, per_seq, per_token, per_pair, per_tile)``, as ``prefill_attention_s``
        reads them."""
        return [self.const_s, self.per_seq_s, self.per_token_s, self.per_pair_s, self.per_tile_s]

    def __call__(self, chunks: list[int], contexts: list[int]) -> float:
        if len(chunks) != len(contexts):
            raise ValueError("PrefillAttention: one context per chunk")
        return prefill_attention_s(self.coefficients, chunks, contexts)


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class DecodeAttention:
    """Per-layer decode attention of ``n`` sequences with summed context ``x``.

    ``max(floor(n), base(n) + per_context_token(n) * x)``, the three coefficients tabulated at the
    batch sizes ``seqs`` (powers of two) and interpolated linearly in ``log2 n`` (clamped at the
    ends): real decode kernels switch tiling and split-KV heuristics with the batch size, so the
    per-token cost is not one constant.
    """

    seqs: tuple[int, ...]
    floor_s: tuple[float, ...]
    base_s: tuple[float, ...]
    per_context_token_s: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.seqs)
        if k == 0 or not (
            len(self.floor_s) == len(self.base_s) == len(self.per_context_token_s) == k
        ):
            raise ValueError("DecodeAttention: seqs and the coefficient lists must have one length")
        if any(b <= a for a, b in zip(self.seqs, self.seqs[1:], strict=False)) or self.seqs[0] < 1:
            raise ValueError("DecodeAttention.seqs must be increasing positive integers")

    def coefficients(self, num_seqs: int) -> tuple[float, float, float]:
        """``(floor, base, per_context_token)`` at ``num_seqs`` sequences."""
        seqs = self.seqs
        if num_seqs <= seqs[0]:
            return self.floor_s[0], self.base_s[0], self.per_context_token_s[0]
        if num_seqs >= seqs[-1]:
            return self.floor_s[-1], self.base_s[-1], self.per_context_token_s[-1]
        i = bisect.bisect_right(seqs, num_seqs) - 1
        lo, hi = seqs[i], seqs[i + 1]
        w = (math.log2(num_seqs) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
        return (
            self.floor_s[i] + w * (self.floor_s[i + 1] - self.floor_s[i]),
            self.base_s[i] + w * (self.base_s[i + 1] - self.base_s[i]),
            self.per_context_token_s[i]
            + w * (self.per_context_token_s[i + 1] - self.per_context_token_s[i]),
        )

    def piece(self, num_seqs: int, context_sum: float) -> tuple[float, float, float]:
        """``(base, slope, valid_until)``: the affine piece in force at ``context_sum``.

        ``base + slope * x`` equals the attention time for every ``x`` from ``context_sum`` up to
        ``valid_until`` (inclusive), as contexts only grow during a decode stretch.
        """
        return self.piece_of(self.coefficients(num_seqs), context_sum)

    @staticmethod
    def piece_of(
        coefficients: tuple[float, float, float], context_sum: float
    ) -> tuple[float, float, float]:
        """``piece`` from already looked-up ``coefficients`` (callers may memoise those)."""
        floor, base, slope = coefficients
        return decode_piece(floor, base, slope, context_sum)

    def __call__(self, num_seqs: int, context_sum: float) -> float:
        base, slope, _ = self.piece(num_seqs, context_sum)
        return base + slope * context_sum
