"""``ProfilePerfModel``: a profile's iteration-time model (the form of ``forms.py``) as the
simulator's ``PerfModel``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from chiron_gym.profiles.forms import DecodeAttention
from chiron_gym.sim import BatchComposition

if TYPE_CHECKING:
    from chiron_gym.profiles.parts import Calibrated


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class ProfilePerfModel:
    """``PerfModel`` from a profile: the iteration time of ``forms.py``."""

    __slots__ = (
        "_allreduce_bytes_per_token",
        "_c",
        "_decode_coef",
        "_layers",
        "_prefill",
        "_token_cache",
        "profile",
    )

    def __init__(self, profile: Calibrated) -> None:
        self.profile = profile
        self._c = profile.iteration
        self._prefill = profile.iteration.prefill_attention
        self._layers = profile.model.layers
        self._allreduce_bytes_per_token = 2 * profile.model.hidden  # bf16 activations
        self._decode_coef: dict[int, tuple[float, float, float]] = {}  # by batch size
        self._token_cache: dict[tuple[int, int], float] = {}  # (tokens, sequences): bounded by
        # max_num_batched_tokens x max batch size, a few thousand pairs in practice

    def _token_terms(self, num_tokens: int, num_seqs: int) -> float:
        """Everything but attention: CPU, embedding, LM head and the per-layer GEMMs."""
        c = self._c
        layer = c.elementwise(num_tokens)
        for g in c.gemm.values():
            layer += g(num_tokens)
        if c.allreduce is not None:
            layer += 2.0 * c.allreduce(num_tokens * self._allreduce_bytes_per_token)
        return (
            c.cpu(num_seqs) + c.embedding(num_tokens) + c.lm_head(num_seqs) + self._layers * layer
        )

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
        key = (num_tokens, num_seqs)
        t = self._token_cache.get(key)
        if t is None:
            t = self._token_cache[key] = self._token_terms(num_tokens, num_seqs)
        return t

    def _decode_piece(self, num_seqs: int, context_sum: float) -> tuple[float, float, float]:
        coef = self._decode_coef.get(num_seqs)
        if coef is None:
            coef = self._decode_coef[num_seqs] = self._c.decode_attention.coefficients(num_seqs)
        return DecodeAttention.piece_of(coef, context_sum)
