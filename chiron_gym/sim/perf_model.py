"""Iteration time of one engine step, from the batch's full composition.

``PerfModel`` is the plug point; the calibrated, profile-backed model (``chiron_gym.profiles``)
and ``LinearPerfModel`` implement it. The one structural promise a model makes, and the one that
lets the simulator fast-forward (``sim/instance.py``), is that a decode-only iteration of ``n``
sequences is piecewise affine in the summed context: ``base_s + per_context_token_s * sum(ctx)``
on pieces the model names, which is what decode attention is (it reads every cached token once,
above a launch-bound floor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from mypy_extensions import mypyc_attr


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
@dataclass(slots=True)
class BatchComposition:
    """What one iteration computes.

    ``prefill_new_tokens[i]`` tokens of a prompt chunk are computed on top of
    ``prefill_context_tokens[i]`` tokens already cached; ``num_decode`` requests each compute one
    token, attending over ``decode_context_sum`` cached tokens in all (their own included). Decode
    attention reads every cached token once, so the decodes enter a model only through their
    count and summed context (the simulator keeps both as running totals, not per request);
    ``with_decodes`` builds one from a list of per-request decode contexts.
    """

    prefill_new_tokens: list[int]
    prefill_context_tokens: list[int]
    num_decode: int = 0
    decode_context_sum: int = 0

    @classmethod
    def with_decodes(
        cls,
        prefill_new_tokens: list[int],
        prefill_context_tokens: list[int],
        decode_context_tokens: list[int],
    ) -> BatchComposition:
        """A batch from per-request decode contexts (``decode_context_tokens[j]`` each)."""
        return cls(
            prefill_new_tokens,
            prefill_context_tokens,
            len(decode_context_tokens),
            sum(decode_context_tokens),
        )

    @property
    def num_tokens(self) -> int:
        """Tokens computed in this iteration (the chunked-prefill budget counts these)."""
        return sum(self.prefill_new_tokens) + self.num_decode


class PerfModel(Protocol):
    """Iteration time of an engine step on one instance."""

    def iteration_time_s(self, batch: BatchComposition) -> float:
        """Seconds for one iteration computing ``batch``."""
        ...

    def decode_cost(self, num_seqs: int, context_sum: float) -> tuple[float, float, float]:
        """``(base_s, per_context_token_s, valid_until)`` of decode-only iterations.

        For every decode-only batch of ``num_seqs`` requests whose summed context ``x`` lies in
        ``[context_sum, valid_until]``, ``iteration_time_s == base_s + per_context_token_s * x``.
        """
        ...


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class LinearPerfModel:
    """A linear iteration-time model, used until a calibrated profile is given.

    ``t = overhead_s + per_token_s * tokens + per_seq_s * sequences
    + prefill_pair_s * sum(chunk * context + chunk * (chunk + 1) / 2)
    + decode_context_s * sum(decode contexts)``.

    The defaults are placeholders of the right order for Llama-3-8B on one A100 (bf16), read off
    the data described in ``../shared/data/README.md``: ~4 ms CPU overhead per iteration plus
    ~9 ms of weight reads (Vidur ``mlp.csv``: 0.29 ms per layer at one token, 32 layers);
    6.5e-5 s per token of GEMM (1.04 ms per layer at 512 tokens); decode attention 4.3e-8 s per
    cached token (AIConfigurator: 0.35 ms per layer at batch 32, context 8191); prefill attention
    ~2.6e-9 s per query-key pair (FLOP count at ~200 TFLOP/s). The calibrated profiles replace it.
    """

    overhead_s: float = 13e-3
    per_token_s: float = 6.5e-5
    per_seq_s: float = 0.0
    prefill_pair_s: float = 2.6e-9
    decode_context_s: float = 4.3e-8

    def __post_init__(self) -> None:
        for name in (
            "overhead_s",
            "per_token_s",
            "per_seq_s",
            "prefill_pair_s",
            "decode_context_s",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"LinearPerfModel.{name} must be >= 0")

    def iteration_time_s(self, batch: BatchComposition) -> float:
        """Seconds for one iteration computing ``batch``."""
        n_decode = batch.num_decode
        n_prefill = len(batch.prefill_new_tokens)
        prefill_tokens = 0
        pairs = 0.0
        for chunk, context in zip(
            batch.prefill_new_tokens, batch.prefill_context_tokens, strict=True
        ):
            prefill_tokens += chunk
            pairs += chunk * context + chunk * (chunk + 1) / 2
        base, per_ctx, _ = self.decode_cost(n_decode, 0.0)
        return (
            base
            + per_ctx * batch.decode_context_sum
            + self.per_token_s * prefill_tokens
            + self.per_seq_s * n_prefill
            + self.prefill_pair_s * pairs
        )

    def decode_cost(self, num_seqs: int, context_sum: float) -> tuple[float, float, float]:
        """``(base_s, per_context_token_s, valid_until)``: one affine piece, valid everywhere."""
        return (
            self.overhead_s + (self.per_token_s + self.per_seq_s) * num_seqs,
            self.decode_context_s,
            math.inf,
        )
