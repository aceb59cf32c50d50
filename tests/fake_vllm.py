"""A fake vLLM OpenAI-compatible server for tests that need one without vLLM: ``/health``,
``/metrics`` (no series, or with ``itl_metrics`` vLLM's inter-token-latency histogram, each
decode token counted ``per_token_s`` whether streamed or burst), ``/v1/models`` and streamed
``/v1/completions`` as vLLM streams them
(``data:`` lines with the cumulative usage on every chunk, a usage block, ``[DONE]``). What it
does with each completion request is the test's ``behaviour``: ``steady`` (one chunk per token,
``per_token_s`` apart), ``burst`` (every chunk in one write), ``stall`` (never answers) or
``error`` (HTTP 500)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Behaviour = Callable[[int, int, int], str]  # (serial, prompt, max_tokens) -> what to do


@contextmanager
def fake_server(
    behaviour: Behaviour, per_token_s: float = 0.005, *, itl_metrics: bool = False
) -> Iterator[str]:
    """A fake vLLM server on a thread of its own; its base URL."""
    loop = asyncio.new_event_loop()
    handlers: set[asyncio.Task[None]] = set()
    stopping = asyncio.Event()  # a stalled request waits on it, so that it ends when we stop
    serial = [0]
    itl = [0.0, 0]  # the histogram's sum and count

    def metrics() -> bytes:
        if not itl_metrics:
            return b""
        name = "vllm:inter_token_latency_seconds"
        return (
            f"# TYPE {name} histogram\n"
            f'{name}_bucket{{le="+Inf",model_name="fake"}} {itl[1]}\n'
            f'{name}_count{{model_name="fake"}} {itl[1]}\n'
            f'{name}_sum{{model_name="fake"}} {itl[0]}\n'
        ).encode()

    async def reply(w: asyncio.StreamWriter, status: str, body: bytes) -> None:
        w.write(f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        await w.drain()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await r.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n")[0].decode()
            length = [
                int(x.split(b":")[1])
                for x in head.split(b"\r\n")
                if x.lower().startswith(b"content-length")
            ]
            body = await r.readexactly(length[0]) if length else b""
            if line.startswith("GET /v1/models"):
                card = {"data": [{"id": "fake", "root": "fake", "max_model_len": 512}]}
                await reply(w, "200 OK", json.dumps(card).encode())
            elif line.startswith("GET /metrics"):
                await reply(w, "200 OK", metrics())
            elif line.startswith("GET /health"):
                await reply(w, "200 OK", b"")
            elif line.startswith("POST /v1/completions"):
                req = json.loads(body)
                serial[0] += 1
                what = behaviour(serial[0], len(req["prompt"]), int(req["max_tokens"]))
                if what == "stall":
                    await stopping.wait()
                    w.close()
                    return
                if what == "error":
                    await reply(w, "500 Internal Server Error", b'{"error": "fake"}')
                    w.close()
                    return
                w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                await w.drain()
                n = int(req["max_tokens"])
                lines = [
                    {"choices": [{"text": "x"}], "usage": {"completion_tokens": k}}
                    for k in range(1, n + 1)
                ]
                lines.append({"choices": [], "usage": {"completion_tokens": n}})
                data = [b"data: " + json.dumps(x).encode() + b"\n\n" for x in lines]
                data.append(b"data: [DONE]\n\n")
                itl[0] += (n - 1) * per_token_s  # the engine's clock: made per_token_s apart
                itl[1] += n - 1
                if what == "burst":  # one write: every token arrives at one instant
                    w.write(b"".join(data))
                else:
                    for d in data:
                        w.write(d)
                        await w.drain()
                        await asyncio.sleep(per_token_s)
                await w.drain()
            else:
                await reply(w, "404 Not Found", b"")
            w.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the probe gave up on this request and closed it
        finally:
            w.close()  # closed however the request ended (a second close is a no-op)
            handlers.discard(asyncio.current_task())  # type: ignore[arg-type]

    server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:

        async def stop() -> None:
            server.close()
            stopping.set()  # stalled handlers return on their own: no cancelled task to log
            if handlers:
                await asyncio.wait(list(handlers), timeout=5)
            for t in list(handlers):
                t.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        # an event loop left open warns when collected, inside whatever test runs then (one
        # still running cannot be closed)
        if not thread.is_alive():
            loop.close()
