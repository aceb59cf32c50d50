"""The HTTP client of the real backend: health, ``/metrics`` and timed streamed completions.

The backend modules speak HTTP only through this one (``tests/test_layering.py``; live
calibration, ``profiles/probe.py``, reads ``/metrics`` through it too), and this one through the
lean client of ``chiron_gym/http_lean.py``: the client shares the host with the servers it
measures, so it timestamps each streamed chunk as it arrives and decodes no token chunk
(``docs/real-backend.md``, "The client"). What a request carries (exact-length prompts of
token ids) and how a stream is read are in ``chiron_gym/openai_stream.py``, shared with live
calibration.
"""

from __future__ import annotations

from collections.abc import Callable

from chiron_gym.http_lean import HttpError, LeanClient
from chiron_gym.openai_stream import CompletionStream, completion_body, stream_completion


def parse_metrics(text: str) -> dict[str, float]:
    """The vLLM gauges and counters we observe, summed over label sets."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        "vllm:num_requests_running": "running",
        "vllm:num_requests_waiting": "waiting",
        "vllm:kv_cache_usage_perc": "kv_usage",
        "vllm:gpu_cache_usage_perc": "kv_usage",
        "vllm:generation_tokens": "generation_tokens",
        "vllm:num_preemptions": "preemptions",
    }
    # Histograms: their _sum and _count (seconds between two tokens of a request, summed).
    histograms = {
        "vllm:inter_token_latency_seconds": "itl",
        "vllm:time_per_output_token_seconds": "itl",
        "vllm:time_to_first_token_seconds": "ttft",
    }
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        hist = histograms.get(fam.name)
        if hist is not None:
            for s in fam.samples:
                for suffix in ("_sum", "_count"):
                    if s.name.endswith(suffix):
                        hkey = hist + suffix
                        out[hkey] = out.get(hkey, 0.0) + float(s.value)
            continue
        key = wanted.get(fam.name)
        if key is None:
            continue
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[key] = out.get(key, 0.0) + float(s.value)
    return out


def parse_cache_config(text: str) -> tuple[int | None, int | None]:
    """``(num_gpu_blocks, block_size)`` from the ``vllm:cache_config_info`` gauge of a
    ``/metrics`` text (``None, None`` when it has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        if fam.name == "vllm:cache_config_info":
            for s in fam.samples:
                blocks = s.labels.get("num_gpu_blocks")
                size = s.labels.get("block_size")
                if blocks not in (None, "None") and size not in (None, "None"):
                    return int(blocks), int(size)
    return None, None


class VllmClient:
    """Asks vLLM OpenAI-compatible servers, by base URL, for health, metrics and completions."""

    def __init__(self, request_timeout_s: float) -> None:
        self._http = LeanClient(idle_timeout_s=request_timeout_s)

    async def healthy(self, url: str) -> bool:
        """Whether ``GET /health`` answers 200 (raises if the server does not answer)."""
        status, _ = await self._http.get(url, "/health", timeout_s=2.0)
        return status == 200

    async def metrics(self, url: str) -> dict[str, float]:
        """The server's ``/metrics``, parsed (``parse_metrics``)."""
        return parse_metrics(await self.metrics_text(url))

    async def metrics_text(self, url: str, timeout_s: float = 5.0) -> str:
        """The server's ``/metrics`` as text (raises unless it answers 200)."""
        status, body = await self._http.get(url, "/metrics", timeout_s=timeout_s)
        if status != 200:
            raise HttpError(f"{url}/metrics: HTTP {status}")
        return body.decode("utf-8", errors="replace")

    async def stream_completion(
        self, url: str, model: str, prompt: list[int], max_tokens: int, clock: Callable[[], float]
    ) -> CompletionStream:
        """Stream a completion of exactly ``max_tokens`` tokens (``ignore_eos``, greedy), timed
        by ``clock()`` at each token chunk's arrival (``first_s``, ``last_s``; NaN if none came);
        raises on an HTTP error status, an error reported in the stream, or a broken stream."""
        body = completion_body(model, prompt, max_tokens)
        return await stream_completion(self._http, url, body, clock)
