"""What the shipped profiles are fitted from: one ``Target`` per profile, and the sources.

Model shapes (bf16 weights) are the Hugging Face configs of the named
checkpoints (checked against the shape columns of Vidur's ``mlp.csv`` when fitting). Repository
and commit of every source are those of ``../shared/data/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from chiron_gym.profiles.parts import ModelShape


@dataclass(frozen=True, slots=True)
class Source:
    """A third-party repository the raw data was copied from."""

    repository: str
    commit: str
    root: str  # path of the copied folder inside the repository
    local: str  # the same folder under the data directory


VIDUR = Source(
    "microsoft/vidur",
    "7d47513363ec447a741ac5e47241580b47724fbf",
    "data/profiling",
    "vidur-profiling",
)
VIDUR_CPU = Source(
    "microsoft/vidur",
    "6d98aa8f71696520acc603d87439e77cc78160a7",
    "data/profiling",
    "vidur-profiling",
)
AICONFIGURATOR = Source(
    "ai-dynamo/aiconfigurator",
    "095f58a51c4ca8e61b66ec108d86f223f8d559ce",
    "aic-core/src/aiconfigurator_core/systems/data",
    "aiconfigurator",
)
COLD_START = Source(
    "compiled in shared/data from public logs (each row names its source)",
    "-",
    "cold-start",
    "cold-start",
)
SPLITWISE = Source(
    "Mutinifni/splitwise-sim",
    "8f99e7dc9b407f4ce2488d03dd44c0b8b946dab0",
    "data",
    "splitwise-sim",
)
LLM_INFERENCE_BENCH = Source(
    "argonne-lcf/LLM-Inference-Bench",
    "4211f5d4e9bc0145ed541b6d372d5d8223b44235",
    "Plots",
    "llm-inference-bench",
)


LLAMA2_7B = ModelShape(
    "meta-llama/Llama-2-7b-hf", 32, 32, 32, 128, 4096, 11008, 32000
).with_llama_weights()
LLAMA3_8B = ModelShape(
    "meta-llama/Meta-Llama-3-8B", 32, 32, 8, 128, 4096, 14336, 128256
).with_llama_weights()
LLAMA2_70B = ModelShape(
    "meta-llama/Llama-2-70b-hf", 80, 64, 8, 128, 8192, 28672, 32000
).with_llama_weights()


@dataclass(frozen=True, slots=True)
class Gpu:
    """A GPU type and where its data lives."""

    name: str
    memory_bytes: int
    vidur: str  # folder under vidur-profiling/compute/
    network: str  # folder under vidur-profiling/network/
    aiconfigurator: str  # folder under aiconfigurator/


A100 = Gpu("A100-SXM4-80GB", 80 * 2**30, "a100", "a100_dgx", "a100_sxm")
H100 = Gpu("H100-SXM-80GB", 80 * 2**30, "h100", "h100_dgx", "h100_sxm")
GPUS: dict[str, Gpu] = {"a100": A100, "h100": H100}  # by the key --gpu takes (profile build)


@dataclass(frozen=True, slots=True)
class Target:
    """One profile to fit."""

    name: str
    gpu: Gpu
    shape: ModelShape
    tp: int
    cpu_model: str  # model_name in cpu_overheads.csv (A100 only; see notes)
    cold_start_rows: tuple[str, str]  # (model, phase) in cold_start_observations.csv


_COLD_8B = ("Llama-3-8B", "replica_startup_total")
_COLD_70B = ("meta-llama/Meta-Llama-3-70B", "engine_init_to_ready_approx")

TARGETS: tuple[Target, ...] = (
    Target("a100-llama3-8b-tp1", A100, LLAMA3_8B, 1, "meta-llama/Llama-2-7b-hf", _COLD_8B),
    Target("a100-llama2-7b-tp1", A100, LLAMA2_7B, 1, "meta-llama/Llama-2-7b-hf", _COLD_8B),
    Target("a100-llama2-70b-tp4", A100, LLAMA2_70B, 4, "meta-llama/Llama-2-70b-hf", _COLD_70B),
    Target("h100-llama2-7b-tp1", H100, LLAMA2_7B, 1, "meta-llama/Llama-2-7b-hf", _COLD_8B),
    Target("h100-llama2-70b-tp4", H100, LLAMA2_70B, 4, "meta-llama/Llama-2-70b-hf", _COLD_70B),
)

# Memory vLLM keeps outside weights and KV per GPU (activations at the profiled peak, CUDA graphs,
# allocator slack): a typical figure of vLLM's start-up log, not a measurement of ours.
RESERVE_BYTES_PER_GPU = 2 * 2**30
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default
BLOCK_SIZE_TOKENS = 16  # vLLM's default on CUDA
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0
