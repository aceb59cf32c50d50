"""The HTTP client of the real backend: health, ``/metrics`` and timed streamed completions.

One ``httpx.AsyncClient`` for every vLLM server of an episode; the backend modules import no
other HTTP library and speak HTTP only through this one (``tests/test_layering.py``). What a
request carries (exact-length prompts of token ids) and how a stream is read are in
``chiron_gym/openai_stream.py``, shared with live calibration.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from chiron_gym.openai_stream import sse_chunks


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


class VllmClient:
    """Asks vLLM OpenAI-compatible servers, by base URL, for health, metrics and completions."""

    def __init__(self, request_timeout_s: float) -> None:
        import httpx

        self._http = httpx.AsyncClient(timeout=httpx.Timeout(request_timeout_s, connect=5.0))

    async def healthy(self, url: str) -> bool:
        """Whether ``GET /health`` answers 200 (raises if the server does not answer)."""
        r = await self._http.get(f"{url}/health", timeout=2.0)
        return r.status_code == 200

    async def metrics(self, url: str) -> dict[str, float]:
        """The server's ``/metrics``, parsed (``parse_metrics``)."""
        r = await self._http.get(f"{url}/metrics", timeout=5.0)
        return parse_metrics(r.text)

    async def stream_completion(
        self, url: str, model: str, prompt: list[int], max_tokens: int, clock: Callable[[], float]
    ) -> tuple[float, float]:
        """Stream a completion of exactly ``max_tokens`` tokens (``ignore_eos``, greedy);
        ``clock()`` at its first and its last text chunk.

        NaN for both when no text came; raises on an HTTP error status or a broken stream.
        """
        body = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
        }
        t_first = math.nan
        t_last = math.nan
        async with self._http.stream("POST", f"{url}/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}")
            async for chunk in sse_chunks(resp):
                if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                    now = clock()
                    if math.isnan(t_first):
                        t_first = now
                    t_last = now
        return t_first, t_last

    async def aclose(self) -> None:
        await self._http.aclose()
