"""B8: what a streaming client costs the host it measures (``python -m benchmarks.client_cost``).

A stand-in server (this module with ``--serve``, its own process) streams completions as vLLM's
OpenAI server does: chunked server-sent events, one ``data:`` line per token of about the size of
vLLM 0.32's completion chunks, a final usage block and ``data: [DONE]``, each stream paced at
``--gap-ms`` between tokens. Each client reads the same streams (``--streams`` at once,
``--rounds`` times) and timestamps every token; the figure is the client process's CPU time per
thousand streamed tokens (``time.process_time``), the CPU a real server on the same cores loses.

Clients: ``httpx-json`` (httpx's line iterator, every chunk decoded as JSON: the real backend's
client before issue 22), ``httpx-raw`` (httpx, raw bytes split by hand), ``aiohttp`` (its line
reader, no decoding), ``lean`` (``chiron_gym/http_lean.py`` and
``openai_stream.CompletionStream``: what the real backend and ``chiron profile measure`` use).
One JSON line per client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

CHUNK = (
    '{"id":"cmpl-9f0c2b7e1a3d4c5b8e6f7a8b9c0d1e2f","object":"text_completion",'
    '"created":1764547200,"model":"tiny","choices":[{"index":0,"text":" tok",'
    '"logprobs":null,"finish_reason":null,"stop_reason":null}]}'
)
USAGE = (
    '{"id":"cmpl-9f0c2b7e1a3d4c5b8e6f7a8b9c0d1e2f","object":"text_completion",'
    '"created":1764547200,"model":"tiny","choices":[],"usage":{"prompt_tokens":128,'
    '"total_tokens":{total},"completion_tokens":{n}}}'
)


# ---------------------------------------------------------------------------- the stand-in server


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gap_s: float
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:  # a pooled connection closed unused
        writer.close()
        return
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = json.loads(await reader.readexactly(length)) if length else {}
    n = int(body.get("max_tokens", 16))
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )

    def chunk(payload: str) -> bytes:
        data = f"data: {payload}\n\n".encode()
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    loop = asyncio.get_running_loop()
    t = loop.time()
    for _ in range(n):
        t += gap_s
        await asyncio.sleep(max(0.0, t - loop.time()))
        writer.write(chunk(CHUNK))
    usage = USAGE.replace("{total}", str(128 + n)).replace("{n}", str(n))
    writer.write(chunk(usage) + chunk("[DONE]") + b"0\r\n\r\n")
    await writer.drain()
    writer.close()


def serve(port: int, gap_s: float) -> None:
    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _serve_one(r, w, gap_s), "127.0.0.1", port, backlog=256
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------------------- the clients


def _body(n: int) -> dict[str, Any]:
    return {"model": "tiny", "prompt": [5] * 16, "max_tokens": n, "stream": True}


async def _httpx_json(c: Any, url: str, n: int, clock: Callable[[], float]) -> int:
    stamps = []
    async with c.stream("POST", f"{url}/v1/completions", json=_body(n)) as resp:
        async for line in resp.aiter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            if chunk.get("choices") and chunk["choices"][0].get("text") is not None:
                stamps.append(clock())
    return len(stamps)


async def _httpx_raw(c: Any, url: str, n: int, clock: Callable[[], float]) -> int:
    stamps = []
    buf = b""
    async with c.stream("POST", f"{url}/v1/completions", json=_body(n)) as resp:
        async for piece in resp.aiter_raw():
            now = clock()
            buf += piece
            *lines, buf = buf.split(b"\n")
            stamps += [now for x in lines if x.startswith(b"data:") and b'"choices":[{' in x]
    return len(stamps)


async def _aiohttp(c: Any, url: str, n: int, clock: Callable[[], float]) -> int:
    stamps = []
    async with c.post(f"{url}/v1/completions", json=_body(n)) as resp:
        async for line in resp.content:
            if line.startswith(b"data:") and b'"choices":[{' in line:
                stamps.append(clock())
    return len(stamps)


async def _lean(c: Any, url: str, n: int, clock: Callable[[], float]) -> int:
    from chiron_gym.openai_stream import stream_completion

    got = await stream_completion(c, url, json.dumps(_body(n)).encode(), clock)
    return got.chunks


def _session(name: str) -> Any:
    """The client object every stream of a run shares (a connection pool, where it has one)."""
    if name.startswith("httpx"):
        import httpx

        return httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_connections=None))
    if name == "aiohttp":
        import aiohttp

        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    from chiron_gym.http_lean import LeanClient

    return LeanClient()


Stream = Callable[[Any, str, int, Callable[[], float]], Awaitable[int]]
CLIENTS: dict[str, Stream] = {
    "httpx-json": _httpx_json,
    "httpx-raw": _httpx_raw,
    "aiohttp": _aiohttp,
    "lean": _lean,
}


def measure(
    name: str, url: str, streams: int, rounds: int, tokens: int, loop: str = "asyncio"
) -> dict[str, Any]:
    fn = CLIENTS[name]
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if loop == "uvloop":  # optional, not a dependency: imported by name, untyped
        import importlib

        factory = importlib.import_module("uvloop").new_event_loop

    async def run() -> tuple[int, float, float]:
        session = _session(name)
        total = 0
        try:
            await fn(session, url, 8, time.monotonic)  # imports and first connection: not timed
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(rounds):
                got = await asyncio.gather(
                    *(fn(session, url, tokens, time.monotonic) for _ in range(streams))
                )
                if any(g != tokens for g in got):
                    raise RuntimeError(f"{name}: counted {sorted(set(got))} tokens, sent {tokens}")
                total += sum(got)
            return total, time.process_time() - cpu0, time.perf_counter() - wall0
        finally:
            if hasattr(session, "aclose"):
                await session.aclose()
            elif hasattr(session, "close"):
                await session.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        total, cpu, wall = runner.run(run())
    return {
        "benchmark": "B8 client cost",
        "client": name,
        "loop": loop,
        "streams": streams,
        "tokens": total,
        "cpu_s_per_1k_tokens": round(1e3 * cpu / total, 4),
        "cpu_share_of_a_core": round(cpu / wall, 3),
        "wall_s": round(wall, 2),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_clients(
    names: list[str],
    streams: int = 16,
    rounds: int = 5,
    tokens: int = 200,
    gap_ms: float = 10.0,
    loop: str = "asyncio",
) -> list[dict[str, Any]]:
    """Start the stand-in server, measure each client in ``names``, stop the server."""
    port = _free_port()
    cmd = [sys.executable, "-m", "benchmarks.client_cost", "--serve", str(port)]
    server = subprocess.Popen([*cmd, "--gap-ms", str(gap_ms)])
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the stand-in server did not start") from None
                time.sleep(0.1)
        for name in names:
            try:
                rows.append(measure(name, url, streams, rounds, tokens, loop))
            except ImportError as e:
                rows.append({"benchmark": "B8 client cost", "client": name, "skipped": str(e)})
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.client_cost", description=__doc__)
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--streams", type=int, default=16, help="concurrent streams (16)")
    ap.add_argument("--tokens", type=int, default=200, help="tokens per stream (200)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of --streams streams (5)")
    ap.add_argument("--gap-ms", type=float, default=10.0, help="ms between tokens (10)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="which clients, comma-separated")
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"], help="event loop")
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.gap_ms / 1e3)
        return 0
    names = args.clients.split(",")
    for row in run_clients(names, args.streams, args.rounds, args.tokens, args.gap_ms, args.loop):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
