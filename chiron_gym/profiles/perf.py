"""``ProfilePerfModel``: a profile's iteration-time model (the form of ``forms.py``) as the
simulator's ``PerfModel``.

It evaluates the forms' arithmetic itself, on their coefficients copied into plain attributes:
the same operations in the same order as each form's ``__call__`` (so the same floats, bit for
bit: ``tests/profiles/test_perf_inline.py``), without a Python-level call per term, which the
compiled core pays for every call into a frozen (non-native) form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from chiron_gym.profiles.forms import (
    FlatThenLinear,
    decode_piece,
    flat_then_linear,
    prefill_attention_s,
)
from chiron_gym.sim import BatchComposition

if TYPE_CHECKING:
    from chiron_gym.profiles.parts import Calibrated


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class ProfilePerfModel:
    """``PerfModel`` from a profile: the iteration time of ``forms.py``."""

    __slots__ = (
        "_allreduce_bytes_per_token",
        "_allreduce_max",
        "_c",
        "_custom",
        "_decode_coef",
        "_flat",
        "_layers",
        "_nccl",
        "_pa",
        "_token_cache",
        "profile",
    )

    def __init__(self, profile: Calibrated) -> None:
        self.profile = profile
        c = self._c = profile.iteration
        self._layers = profile.model.layers
        self._allreduce_bytes_per_token = 2 * profile.model.hidden  # bf16 activations
        self._decode_coef: dict[int, tuple[float, float, float]] = {}  # by batch size
        self._token_cache: dict[int, float] = {}  # by (tokens << 20) | sequences: bounded by
        # max_num_batched_tokens x max batch size, a few thousand pairs in practice
        self._pa = c.prefill_attention.coefficients
        # FlatThenLinear terms as (floor, base, slope, quantum): lm_head, then the GEMMs in order
        self._flat = [_flat(c.lm_head), *(_flat(g) for g in c.gemm.values())]
        ar = c.allreduce
        self._allreduce_max = -1 if ar is None else ar.custom_max_bytes  # -1: no all-reduce
        self._custom = _flat(ar.custom) if ar is not None else (0.0, 0.0, 0.0, 1)
        self._nccl = _flat(ar.nccl) if ar is not None else (0.0, 0.0, 0.0, 1)

    def _token_terms(self, num_tokens: int, num_seqs: int) -> float:
        """Everything but attention: CPU, embedding, LM head and the per-layer GEMMs (the forms'
        arithmetic, in their order)."""
        c = self._c
        flat = self._flat
        layer = c.elementwise.const_s + c.elementwise.slope_s * num_tokens
        for k in range(1, len(flat)):
            layer += _flat_at(flat[k], num_tokens)
        if self._allreduce_max >= 0:
            nbytes = num_tokens * self._allreduce_bytes_per_token
            form = self._custom if nbytes <= self._allreduce_max else self._nccl
            layer += 2.0 * _flat_at(form, nbytes)
        cpu = c.cpu.const_s + c.cpu.slope_s * num_seqs
        embedding = c.embedding.const_s + c.embedding.slope_s * num_tokens
        return cpu + embedding + _flat_at(flat[0], num_seqs) + self._layers * layer

    def _prefill(self, chunks: list[int], contexts: list[int]) -> float:
        """``PrefillAttention`` of the batch's chunks."""
        return prefill_attention_s(self._pa, chunks, contexts)

    def iteration_time_s(self, batch: BatchComposition) -> float:
        """Seconds for one iteration computing ``batch``."""
        n_dec = batch.num_decode
        n_pre = len(batch.prefill_new_tokens)
        tokens = sum(batch.prefill_new_tokens) + n_dec
        t = self._tokens(tokens, n_pre + n_dec)
        attn = 0.0
        if n_pre:
            attn += self._prefill(batch.prefill_new_tokens, batch.prefill_context_tokens)
        if n_dec:
            ctx = float(batch.decode_context_sum)
            base, slope, _ = self._decode_piece(n_dec, ctx)
            attn += base + slope * ctx
        return t + self._layers * attn

    def decode_cost(self, num_seqs: int, context_sum: float) -> tuple[float, float, float]:
        """``(base_s, per_context_token_s, valid_until)`` of a decode-only iteration."""
        fixed = self._tokens(num_seqs, num_seqs)
        base, slope, until = self._decode_piece(num_seqs, context_sum)
        return fixed + self._layers * base, self._layers * slope, until

    def _tokens(self, num_tokens: int, num_seqs: int) -> float:
        """``_token_terms``, memoised (a decode iteration of ``n`` sequences is ``(n, n)``)."""
        if num_seqs >= 1 << 20:  # beyond the key's room (no engine batches that many)
            return self._token_terms(num_tokens, num_seqs)
        key = (num_tokens << 20) | num_seqs
        t = self._token_cache.get(key)
        if t is None:
            t = self._token_cache[key] = self._token_terms(num_tokens, num_seqs)
        return t

    def _decode_piece(self, num_seqs: int, context_sum: float) -> tuple[float, float, float]:
        """``DecodeAttention.piece`` (its ``piece_of`` arithmetic), coefficients memoised."""
        coef = self._decode_coef.get(num_seqs)
        if coef is None:
            coef = self._decode_coef[num_seqs] = self._c.decode_attention.coefficients(num_seqs)
        return decode_piece(coef[0], coef[1], coef[2], context_sum)


def _flat(f: FlatThenLinear) -> tuple[float, float, float, int]:
    return (f.floor_s, f.base_s, f.slope_s, f.quantum)


def _flat_at(f: tuple[float, float, float, int], x: int) -> float:
    return flat_then_linear(f[0], f[1], f[2], f[3], x)
