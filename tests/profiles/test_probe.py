"""``chiron profile measure``'s probe against a fake OpenAI-compatible server with degenerate
timings: a stream delivered in one burst (zero gaps), samples that are all the same, and a server
that stalls. The probe never crashes on them: it retries, drops a probe with a warning naming it,
fits on what remains, or refuses with a ``MeasureError`` that says why.

The fake server streams tokens as vLLM does (``data:`` lines with the cumulative usage on every
chunk, a usage block, ``[DONE]``); nothing here asserts a timing, only what the probe made of it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from chiron_gym.profiles.measure import build_profile
from chiron_gym.profiles.probe import MeasureError, ProbePlan, probe
from tests.profiles.test_measure import TINY

PLAN = ProbePlan(
    decode_batches=(1, 4),
    decode_prompts=(32, 256),
    decode_output=48,
    prefill_batches=(1, 2),
    prefill_prompts=(16, 64, 128, 256),
    repeats=2,
    interference_rates=(20.0,),
    stall_s=2.0,
    retries=1,
)

# (prompt tokens, max_tokens) -> what the fake does with a completion request
Behaviour = Callable[[int, int, int], str]  # (serial, prompt, max_tokens) -> steady|burst|stall


@contextmanager
def fake_server(behaviour: Behaviour, per_token_s: float = 0.005) -> Iterator[str]:
    """A fake vLLM server on a thread of its own; its base URL."""
    loop = asyncio.new_event_loop()
    handlers: set[asyncio.Task[None]] = set()
    serial = [0]

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
            elif line.startswith("POST /v1/completions"):
                req = json.loads(body)
                serial[0] += 1
                what = behaviour(serial[0], len(req["prompt"]), int(req["max_tokens"]))
                if what == "stall":
                    await asyncio.sleep(3600)
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
            for t in list(handlers):
                t.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def _measure(url: str) -> dict[str, object]:
    m = probe(url, PLAN, show_progress=False)
    return build_profile(m, name="fake", config=TINY, config_source="test")


def test_zero_gaps_on_some_streams_are_dropped_and_the_rest_fitted() -> None:
    # every third request arrives in one burst: its decode gaps are zero and measure nothing
    def some_burst(serial: int, prompt: int, out: int) -> str:
        return "burst" if serial % 3 == 0 else "steady"

    with fake_server(some_burst) as url:
        doc = _measure(url)
    assert doc["validation"]["mape_pct"]["decode_iteration"] >= 0


def test_a_server_that_only_bursts_is_refused_with_the_reason() -> None:
    with fake_server(lambda s, p, o: "burst") as url, pytest.raises(MeasureError, match="decode"):
        _measure(url)


def test_identical_samples_fit_a_flat_engine() -> None:
    """The same time per token whatever the batch, the same first token whatever the prompt: a
    flat fit, positive, and no error."""
    with fake_server(lambda s, p, o: "steady") as url:
        m = probe(url, PLAN, show_progress=False)
    doc = build_profile(m, name="fake", config=TINY, config_source="test")
    assert {p.batch for p in m.decode} == {1, 4}
    assert doc["validation"]["mape_pct"]["decode_iteration"] >= 0


def test_a_stalled_probe_is_retried_then_dropped_with_a_warning_naming_it() -> None:
    def stall_long_decodes(serial: int, prompt: int, out: int) -> str:
        return "stall" if (prompt, out) == (256, PLAN.decode_output) else "steady"

    with fake_server(stall_long_decodes) as url, pytest.warns(UserWarning) as caught:
        m = probe(url, PLAN, show_progress=False)
    dropped = [str(w.message).split(" dropped")[0] for w in caught]
    assert dropped == [f"decode probe ({b} x 256-token prompts)" for b in PLAN.decode_batches]
    assert all("after 2 tries" in str(w.message) for w in caught)
    assert m.decode and {round(p.context_sum / p.batch) for p in m.decode} < set(range(32, 90))
    build_profile(m, name="fake", config=TINY, config_source="test")


def test_a_server_that_stops_answering_is_refused_not_waited_on_forever() -> None:
    with (
        fake_server(lambda s, p, o: "stall") as url,
        pytest.raises(MeasureError, match="stopped answering"),
        pytest.warns(UserWarning, match="warm-up"),
    ):
        probe(url, PLAN, show_progress=False)
