"""Empirical length tables (quantiles of prompt and output tokens) derived from real traces.

Only the quantiles ship (``chiron_gym/workload/tables/<name>.json``), never the traces; each file
names its source (repository, commit, path, SHA-256). ``chiron trace tables --data DIR --out DIR``
regenerates them byte for byte.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.workload.lengths import LengthDist
from chiron_gym.workload.trace import TraceError, read_trace

# 0, 1, ..., 99 percent, then the tail: 99.5, 99.9 and the maximum.
PROBS: tuple[float, ...] = (*(i / 100 for i in range(100)), 0.995, 0.999, 1.0)


@dataclass(frozen=True, slots=True)
class TableSource:
    name: str
    local: str  # path under the data folder
    repository: str
    commit: str
    path: str
    description: str


SOURCES = (
    TableSource(
        "azure-code",
        "azure-llm-2023/AzureLLMInferenceTrace_code.csv",
        "Azure/AzurePublicDataset",
        "b469a113cedca53ddc3bdea71a143dc4b7d8700c",
        "data/AzureLLMInferenceTrace_code.csv",
        "Azure LLM inference trace 2023, code completion (ContextTokens, GeneratedTokens)",
    ),
    TableSource(
        "azure-conv",
        "azure-llm-2023/AzureLLMInferenceTrace_conv.csv",
        "Azure/AzurePublicDataset",
        "b469a113cedca53ddc3bdea71a143dc4b7d8700c",
        "data/AzureLLMInferenceTrace_conv.csv",
        "Azure LLM inference trace 2023, conversation (ContextTokens, GeneratedTokens)",
    ),
    TableSource(
        "arxiv-summarization",
        "vidur-profiling/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        "microsoft/vidur",
        "7d47513363ec447a741ac5e47241580b47724fbf",
        "data/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        "arXiv summarisation lengths, Llama-2 tokenizer (num_prefill_tokens, num_decode_tokens)",
    ),
)


def _quantiles(values: np.ndarray[Any, Any]) -> list[float]:
    q = np.quantile(values.astype(np.float64), PROBS)
    return [round(float(v), 1) for v in q]


def _columns(src: TableSource, path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    if src.name.startswith("azure"):
        t = read_trace(path, "azure")
        return t.prompt_tokens, t.output_tokens
    prompts: list[int] = []
    outputs: list[int] = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                prompts.append(int(float(row["num_prefill_tokens"])))
                outputs.append(int(float(row["num_decode_tokens"])))
            except (KeyError, TypeError, ValueError):
                raise TraceError(
                    f"{path}:{line}: expected integer num_prefill_tokens and num_decode_tokens"
                ) from None
    return np.asarray(prompts), np.asarray(outputs)


def derive(data: Path) -> dict[str, str]:
    """``{file name: text}`` of every table, from the raw traces under ``data``."""
    out: dict[str, str] = {}
    for src in SOURCES:
        path = data / src.local
        if not path.is_file():
            raise TraceError(f"{path}: trace not found (see ../shared/data/README.md)")
        prompts, outputs = _columns(src, path)
        doc = {
            "name": src.name,
            "description": src.description,
            "source": {
                "repository": src.repository,
                "commit": src.commit,
                "path": src.path,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "requests": len(prompts),
            },
            "derived_by": "chiron trace tables (chiron_gym/workload/tables.py)",
            "probs": list(PROBS),
            "prompt_tokens": _quantiles(prompts),
            "output_tokens": _quantiles(outputs),
        }
        out[f"{src.name}.json"] = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    return out


def names() -> list[str]:
    """Names of the shipped tables."""
    folder = resources.files("chiron_gym.workload") / "tables"
    return sorted(Path(str(p)).stem for p in folder.iterdir() if str(p).endswith(".json"))


def length_dist(name: str, column: str, *, low: int = 1, high: int = 1_000_000) -> LengthDist:
    """The empirical ``LengthDist`` of table ``name``, column ``prompt`` or ``output``."""
    if name not in names():
        raise ValueError(f"unknown length table {name!r}; known: {', '.join(names())}")
    if column not in ("prompt", "output"):
        raise ValueError(f"length table column must be 'prompt' or 'output', got {column!r}")
    path = resources.files("chiron_gym.workload") / "tables" / f"{name}.json"
    doc = json.loads(path.read_text())
    values = tuple(float(v) for v in doc[f"{column}_tokens"])
    return LengthDist(
        kind="empirical",
        mean=max(1.0, float(np.mean(values))),
        low=low,
        high=high,
        probs=tuple(float(p) for p in doc["probs"]),
        values=values,
    )
