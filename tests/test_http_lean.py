"""The lean client (``chiron_gym/http_lean.py``) and the stream reading of ``openai_stream.py``,
against a local asyncio server that sends crafted bytes, in pieces cut anywhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chiron_gym.http_lean import HttpError, LeanClient
from chiron_gym.openai_stream import (
    StreamError,
    completion_body,
    completion_tokens,
    stream_completion,
    usage_only,
)

CHUNK = '{"id":"c","object":"text_completion","choices":[{"index":0,"text":"%s"}]}'
USAGE = '{"id":"c","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":%d}}'


def sse(*payloads: str) -> bytes:
    return b"".join(f"data: {p}\n\n".encode() for p in payloads)


def chunked(body: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def head(status: int = 200, extra: str = "transfer-encoding: chunked\r\n") -> bytes:
    return f"HTTP/1.1 {status} X\r\ncontent-type: text/event-stream\r\n{extra}\r\n".encode()


async def with_server(
    response: bytes, piece: int, go: Callable[[str], Awaitable[Any]], hold_s: float = 0.0
) -> tuple[Any, bytes]:
    """Serve ``response`` in pieces of ``piece`` bytes to one request; ``go(url)``'s result and
    the request the server received."""
    got: list[bytes] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        req = await r.readuntil(b"\r\n\r\n")
        length = [
            int(x.split(b":")[1])
            for x in req.split(b"\r\n")
            if x.lower().startswith(b"content-length")
        ]
        got.append(req + (await r.readexactly(length[0]) if length else b""))
        for i in range(0, len(response), piece):
            w.write(response[i : i + piece])
            await w.drain()
            await asyncio.sleep(0)
        await asyncio.sleep(hold_s)
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await go(f"http://127.0.0.1:{port}")
    return result, got[0]


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 100_000])
@pytest.mark.parametrize("size", [5, 40, 4096])
def test_a_stream_is_read_whole_however_the_bytes_are_cut(piece: int, size: int) -> None:
    body = sse(*(CHUNK % f"t{i}" for i in range(20)), USAGE % 20, "[DONE]")
    clock = iter(range(10**6)).__next__

    async def go(url: str) -> Any:
        return await stream_completion(LeanClient(), url, completion_body("m", [1, 2], 20), clock)

    response = head() + chunked(body, size)
    got, request = run(with_server(response, piece, go))
    assert got.chunks == 20 and got.tokens == 20 and got.ended
    # the clock is read per piece received: one piece, one time
    assert got.first_s < got.last_s if piece < len(response) else got.first_s == got.last_s
    assert request.startswith(b"POST /v1/completions HTTP/1.1\r\n")
    sent = json.loads(request.split(b"\r\n\r\n", 1)[1])
    assert sent["max_tokens"] == 20 and sent["ignore_eos"] and sent["stream"]
    assert sent["stream_options"] == {"include_usage": True}


def test_content_length_and_close_delimited_bodies() -> None:
    body = sse(CHUNK % "a", CHUNK % "b", "[DONE]")
    for extra in (f"content-length: {len(body)}\r\n", ""):

        async def go(url: str) -> Any:
            return await stream_completion(LeanClient(), url, b"{}", lambda: 0.0)

        got, _ = run(with_server(head(extra=extra) + body, 5, go))
        assert got.chunks == 2 and got.tokens is None


def test_get_returns_status_and_body() -> None:
    async def go(url: str) -> Any:
        return await LeanClient().get(url, "/metrics", timeout_s=5)

    (status, body), request = run(
        with_server(head(extra="content-length: 5\r\n") + b"hello", 2, go)
    )
    assert (status, body) == (200, b"hello")
    assert request.startswith(b"GET /metrics HTTP/1.1\r\n")


def test_an_error_status_names_the_url_and_the_body() -> None:
    async def go(url: str) -> Any:
        return await stream_completion(LeanClient(), url, b"{}", lambda: 0.0)

    err = b'{"message":"max_tokens too large"}'
    with pytest.raises(HttpError, match=r"/v1/completions: HTTP 400: .*max_tokens too large"):
        run(with_server(head(400, f"content-length: {len(err)}\r\n") + err, 8, go))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (sse(CHUNK % "a", '{"error":{"message":"engine died"}}'), "engine died"),
        (sse(CHUNK % "a"), "ended without data: \\[DONE\\]"),
    ],
)
def test_errors_inside_the_stream(body: bytes, message: str) -> None:
    async def go(url: str) -> Any:
        return await stream_completion(LeanClient(), url, b"{}", lambda: 0.0)

    with pytest.raises(StreamError, match=message):
        run(with_server(head() + chunked(body, 16), 16, go))


def test_a_broken_body_and_a_silent_server() -> None:
    async def go(url: str) -> Any:
        return await stream_completion(LeanClient(idle_timeout_s=0.3), url, b"{}", lambda: 0.0)

    cut = (head() + chunked(sse(CHUNK % "a", "[DONE]"), 8))[:-20]  # closed mid-chunk
    with pytest.raises(HttpError, match="before the response ended"):
        run(with_server(cut, 8, go))
    with pytest.raises(HttpError, match=r"nothing received for 0\.3 s"):
        run(with_server(head(), 8, go, hold_s=2.0))
    with pytest.raises(HttpError, match="only http://"):
        run(go("https://example.org"))


def test_text_that_looks_like_json_keys_is_not_misread() -> None:
    tricky = CHUNK % '\\"error\\": \\"choices\\":[] completion_tokens'
    assert not usage_only(tricky.encode())
    assert completion_tokens((USAGE % 17).encode()) == 17
    assert completion_tokens(tricky.encode()) is None

    async def go(url: str) -> Any:
        return await stream_completion(LeanClient(), url, b"{}", lambda: 0.0)

    got, _ = run(with_server(head() + chunked(sse(tricky, tricky, "[DONE]"), 9), 9, go))
    assert got.chunks == 2 and got.error is None
