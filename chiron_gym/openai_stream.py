"""What a client of an OpenAI-compatible vLLM server sends and reads, shared by the real
backend's client (``backends/vllm_client.py``) and live calibration (``profiles/probe.py``):
exact-length prompts of token ids that never share a prefix, and the JSON chunks of a streamed
response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

PROMPT_ALPHABET = 250  # token ids token_id .. token_id + 249 encode a request's number


def prompt_ids(serial: int, length: int, token_id: int = 5) -> list[int]:
    """A prompt of exactly ``length`` token ids, distinct for each ``serial`` (its first four
    tokens spell it in base 250): vLLM's prefix cache never matches one request's prompt to
    another's, as with real traffic of distinct prompts (and as the simulator assumes)."""
    head = []
    for _ in range(min(4, length)):
        head.append(token_id + serial % PROMPT_ALPHABET)
        serial //= PROMPT_ALPHABET
    return head + [token_id] * (length - len(head))


async def sse_chunks(resp: Any) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of a streamed OpenAI-compatible response, up to ``data: [DONE]``."""
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)
