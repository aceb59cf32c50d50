"""The parts a profile is made of: the model's shape, its KV cache, the fitted iteration
coefficients and the record of where they came from.

``profile.py`` assembles them into a ``Profile`` (and reads and writes its file); ``perf.py``
reads a profile through ``Calibrated``, the parts its iteration-time model needs, so that the
compiled model does not import the module that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from chiron_gym.profiles.forms import (
    Affine,
    AllReduce,
    DecodeAttention,
    FlatThenLinear,
    PrefillAttention,
)

GEMMS = ("qkv", "o", "up", "down")  # the GEMMs of a layer: the keys of ``gemm``

Bytes = TypeVar("Bytes", int, float)


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The transformer's shape (whole model, before tensor parallelism) and its weights' size."""

    name: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    ffn: int
    vocab: int
    weight_bytes: int = 0  # until counted: ``with_llama_weights``

    def with_llama_weights(self, dtype_bytes: int = 2, *, norms: bool = True) -> ModelShape:
        """This shape with ``weight_bytes`` counted for a Llama-style model at ``dtype_bytes``.

        Parameters: untied embedding and LM head, gated MLP, and with ``norms`` two RMSNorms per
        layer and a final one (``chiron profile measure`` counts without them).
        """
        h = self.hidden
        attn = h * self.heads * self.head_dim * 2 + 2 * h * self.kv_heads * self.head_dim
        layer = attn + 3 * h * self.ffn + (2 * h if norms else 0)
        params = 2 * self.vocab * h + self.layers * layer + (h if norms else 0)
        return replace(self, weight_bytes=params * dtype_bytes)

    def kv_bytes_per_token(self, dtype_bytes: Bytes, kv_heads: int | None = None) -> Bytes:
        """KV-cache bytes a token takes: a key and a value per layer and KV head, at
        ``dtype_bytes`` per element; of ``kv_heads`` KV heads (one GPU's) when given, else of
        the whole model's."""
        heads = self.kv_heads if kv_heads is None else kv_heads
        return 2 * self.layers * heads * self.head_dim * dtype_bytes


@dataclass(frozen=True, slots=True)
class KvCache:
    """KV memory per instance (all GPUs together)."""

    block_size_tokens: int
    gpu_memory_utilization: float
    reserve_bytes: int
    bytes_per_token: int
    capacity_tokens: int
    capacity_blocks: int


@dataclass(frozen=True, slots=True)
class IterationCoefficients:
    """The fitted terms of ``forms.py``, seconds."""

    cpu: Affine
    embedding: Affine
    lm_head: FlatThenLinear
    gemm: dict[str, FlatThenLinear]
    elementwise: Affine
    allreduce: AllReduce | None
    prefill_attention: PrefillAttention
    decode_attention: DecodeAttention


@dataclass(frozen=True, slots=True)
class Record:
    """What a profile says of itself: sources, held-out error, cold-start data (not the model).

    ``parse`` keeps these fields as the document has them (it checks only ``mape_pct``).
    """

    sources: list[dict[str, Any]]
    notes: list[str]
    heldout_fraction: float
    seed: int
    mape_pct: dict[str, float]
    points: dict[str, int]
    cold_start_observations_s: list[float]
    cold_start_source: str
    frontend_source: str | None = None  # None: the document has no ``frontend`` table


class Calibrated(Protocol):
    """What the iteration-time model (``perf.py``) reads of a profile: a ``Profile`` is one."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> ModelShape: ...

    @property
    def iteration(self) -> IterationCoefficients: ...


__all__ = [
    "GEMMS",
    "Calibrated",
    "IterationCoefficients",
    "KvCache",
    "ModelShape",
    "Record",
]
