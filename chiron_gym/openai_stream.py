"""What a client of an OpenAI-compatible vLLM server sends and reads, shared by the real
backend's client (``backends/vllm_client.py``) and live calibration (``profiles/probe.py``):
exact-length prompts of token ids that never share a prefix, the request body, and the
``data:`` lines of a streamed response, read as bytes: a token chunk is timed, never decoded
(``http_lean.py`` says why the client is kept lean)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from chiron_gym.http_lean import LeanClient

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


def completion_body(
    model: str, prompt: list[int], max_tokens: int, *, usage_per_chunk: bool = False
) -> bytes:
    """A streamed completion of exactly ``max_tokens`` tokens (``ignore_eos``, greedy), with the
    usage block at the end (and on every chunk, cumulative, when ``usage_per_chunk``: exact
    token counts even when the server merges tokens into one chunk behind a slow reader)."""
    options: dict[str, bool] = {"include_usage": True}
    if usage_per_chunk:
        options["continuous_usage_stats"] = True
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": options,
    }
    return json.dumps(body, separators=(",", ":")).encode()


class StreamError(RuntimeError):
    """The server reported an error inside a stream, or the stream ended without ``[DONE]``."""


class CompletionStream:
    """Reads a streamed completion line by line (a ``http_lean.LineSink``), as bytes: the time
    of its first and last token chunk, how many there were, and the completion tokens the server
    counted (the usage block). Only an error is decoded as JSON. With ``marks``, each token chunk
    appends ``(time - t0, cumulative tokens)`` as it arrives (the usage on every chunk, when the
    body asked for it, else one token per chunk)."""

    __slots__ = ("chunks", "ended", "error", "first_s", "last_s", "marks", "t0", "tokens", "url")

    def __init__(
        self, url: str = "", marks: list[tuple[float, int]] | None = None, t0: float = 0.0
    ) -> None:
        self.url = url
        self.first_s = math.nan
        self.last_s = math.nan
        self.chunks = 0
        self.tokens: int | None = None
        self.error: str | None = None
        self.ended = False
        self.marks = marks
        self.t0 = t0

    def __call__(self, now: float, line: bytes) -> None:
        if not line.startswith(b"data:") or self.ended:
            return
        data = line[5:].strip()
        if data == b"[DONE]":
            self.ended = True
        elif b'"error":' in data:  # only a key can be: quotes inside a text are escaped
            self.error = self.error or _error_message(data)
        elif usage_only(data):
            self.tokens = completion_tokens(data)
        else:
            if self.chunks == 0:
                self.first_s = now
            self.last_s = now
            self.chunks += 1
            if self.marks is not None:
                seen = self.marks[-1][1] if self.marks else 0
                count = completion_tokens(data) or seen + 1
                if count > seen:
                    self.marks.append((now - self.t0, count))

    def check(self) -> CompletionStream:
        """Itself, or ``StreamError`` if the server reported an error or never said [DONE]."""
        if self.error is not None:
            raise StreamError(f"{self.url}: {self.error}")
        if not self.ended:
            raise StreamError(f"{self.url}: the stream ended without data: [DONE]")
        return self


async def stream_completion(
    client: LeanClient,
    url: str,
    body: bytes,
    clock: Callable[[], float],
    marks: list[tuple[float, int]] | None = None,
    t0: float = 0.0,
) -> CompletionStream:
    """``POST /v1/completions`` with ``body`` (``completion_body``), read as it streams."""
    got = CompletionStream(f"{url}/v1/completions", marks, t0)
    await client.stream_lines(url, "/v1/completions", body, got, clock)
    return got.check()


def _error_message(data: bytes) -> str:
    try:
        err = json.loads(data).get("error")
    except ValueError:
        return data[:300].decode("utf-8", errors="replace")
    if isinstance(err, dict):
        return str(err.get("message", err))[:300]
    return str(err)[:300]


def completion_tokens(data: bytes) -> int | None:
    """The cumulative ``usage.completion_tokens`` a chunk carries, read without decoding it."""
    at = data.rfind(b'"completion_tokens":')
    if at < 0:
        return None
    at += len(b'"completion_tokens":')
    end = at
    while end < len(data) and data[end : end + 1] in b" 0123456789":
        end += 1
    digits = data[at:end].strip()
    return int(digits) if digits else None


def usage_only(data: bytes) -> bool:
    """Whether a chunk is the final usage block (no choices), not a token chunk."""
    return b'"choices":[]' in data or b'"choices": []' in data
