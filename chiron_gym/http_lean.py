"""A lean HTTP/1.1 client on an asyncio protocol, for measuring servers on the host they run on.

The real backend and live calibration share the host's cores with the vLLM server they measure:
every microsecond the client spends per streamed token is taken from the engine. So the client
does the least a measurement needs (``docs/real-backend.md``, "The client"; figures from
``python -m benchmarks.client_cost``):

- the response is parsed inside the protocol's ``data_received``, with no task switch, await or
  async generator per chunk; the clock is read once per read from the socket, which is the
  moment the bytes reached the client;
- the body is split into lines and each complete line handed to a callback with that time; what
  a line holds is the caller's business (nothing here decodes JSON);
- one connection per request (``Connection: close``): a connection set-up on the loopback costs
  less than reading two tokens, and there is no pool to keep;
- a timeout on silence, checked by one timer per request (not re-armed per chunk): a stream may
  last minutes, but a server that says nothing for ``idle_timeout_s`` is given up on.

It speaks ``http://`` to hosts it can reach directly (the servers the backend starts, or
endpoints on the local network), with bodies chunked, of a ``Content-Length``, or up to the
close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

LineSink = Callable[[float, bytes], None]


class HttpError(RuntimeError):
    """No answer, not HTTP/1.x, a status other than 200 on a stream, a broken body, silence."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    base_path: str

    @classmethod
    def of(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise HttpError(f"{url}: only http://HOST[:PORT] URLs are supported")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    def request(self, method: str, path: str, body: bytes | None) -> bytes:
        head = [
            f"{method} {self.base_path}{path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Connection: close",
            "Accept: */*",
        ]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")


class _Exchange(asyncio.Protocol):
    """One request and its response. With ``lines``, the body goes to it line by line as it
    arrives (when the status is 200); otherwise, and for any other status, it is kept whole."""

    def __init__(
        self,
        request: bytes,
        url: str,
        clock: Callable[[], float],
        lines: LineSink | None,
        idle_timeout_s: float,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.request = request
        self.url = url
        self.clock = clock
        self.sink = lines
        self.idle_s = idle_timeout_s
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()  # when not streamed to the sink
        self._raw = bytearray()  # received, not yet parsed
        self._lines = b""  # body bytes of an unfinished line
        self._mode = ""  # "chunked", "length", "close" once the head is read
        self._left = 0  # bytes left of the current chunk (or of the Content-Length body)
        self._heard = self.loop.time()
        self._timer = self.loop.call_later(idle_timeout_s, self._check_idle)

    # --------------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # or uvloop's, which is not one
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = self.clock()
        self._heard = self.loop.time()
        self._raw += data
        try:
            if not self._mode and not self._read_head():
                return
            self._read_body(now)
        except HttpError as e:
            self._finish(e)

    def eof_received(self) -> bool | None:
        if self._mode == "close":
            self._deliver(self.clock(), b"", last=True)
            self._finish(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        if not self.done.done():
            why = f"connection lost ({exc!r})" if exc else "the server closed the connection"
            self._finish(HttpError(f"{self.url}: {why} before the response ended"))

    # --------------------------------------------------------------------- parsing

    def _read_head(self) -> bool:
        end = self._raw.find(b"\r\n\r\n")
        if end < 0:
            if len(self._raw) > 65536:
                raise HttpError(f"{self.url}: response head longer than 64 KiB")
            return False
        head = bytes(self._raw[:end]).decode("latin-1").split("\r\n")
        del self._raw[: end + 4]
        parts = head[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"{self.url}: not an HTTP/1.x response: {head[0][:60]!r}")
        self.status = int(parts[1])
        for line in head[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._mode = "chunked"
        elif "content-length" in self.headers:
            self._mode = "length"
            self._left = int(self.headers["content-length"])
        else:
            self._mode = "close"
        if self.status != 200:
            self.sink = None  # an error body is kept whole, for the message
        return True

    def _read_body(self, now: float) -> None:
        raw = self._raw
        if self._mode == "close":
            self._deliver(now, bytes(raw))
            raw.clear()
            return
        if self._mode == "length":
            take = bytes(raw[: self._left])
            del raw[: len(take)]
            self._left -= len(take)
            self._deliver(now, take, last=self._left == 0)
            if self._left == 0:
                self._finish(None)
            return
        while raw:  # chunked: [size CRLF data CRLF]... 0 CRLF [trailers] CRLF
            if self._left > 0:
                take = bytes(raw[: min(self._left, len(raw))])
                del raw[: len(take)]
                self._left -= len(take)
                self._deliver(now, take)
                if self._left > 0:
                    return
                self._left = -2  # the CRLF after the data
            if self._left < 0:
                if len(raw) < 2:
                    return
                del raw[:2]
                self._left = 0
            eol = raw.find(b"\r\n")
            if eol < 0:
                return
            try:
                size = int(bytes(raw[:eol]).split(b";", 1)[0], 16)
            except ValueError:
                raise HttpError(f"{self.url}: bad chunk size {bytes(raw[:eol])[:40]!r}") from None
            if size == 0:
                self._deliver(now, b"", last=True)
                self._finish(None)  # trailers, if any, are not read
                return
            del raw[: eol + 2]
            self._left = size

    def _deliver(self, now: float, data: bytes, last: bool = False) -> None:
        if self.sink is None:
            self.body += data
            return
        text = self._lines + data
        lines = text.split(b"\n")
        self._lines = b"" if last else lines.pop()
        for line in lines:
            if line:
                self.sink(now, line.rstrip(b"\r"))

    def _finish(self, error: Exception | None) -> None:
        self._timer.cancel()
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        quiet = self.loop.time() - self._heard
        if quiet >= self.idle_s:
            self._finish(HttpError(f"{self.url}: nothing received for {self.idle_s:g} s"))
        else:
            self._timer = self.loop.call_later(self.idle_s - quiet, self._check_idle)


class LeanClient:
    """``get`` and ``stream_lines``, each on a fresh connection with a timeout on silence."""

    def __init__(self, idle_timeout_s: float = 300.0, connect_timeout_s: float = 5.0) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s

    async def _exchange(
        self,
        url: str,
        method: str,
        path: str,
        body: bytes | None,
        clock: Callable[[], float],
        lines: LineSink | None,
        idle_s: float,
    ) -> _Exchange:
        ep = Endpoint.of(url)
        full = f"{url.rstrip('/')}{path}"
        loop = asyncio.get_running_loop()
        request = ep.request(method, path, body)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, proto = await loop.create_connection(
                    lambda: _Exchange(request, full, clock, lines, idle_s), ep.host, ep.port
                )
        except (OSError, TimeoutError) as e:
            raise HttpError(f"{full}: cannot connect ({e!r})") from e
        try:
            await proto.done
        except BaseException:
            proto._finish(None)  # cancelled: close the connection
            raise
        return proto

    async def get(self, url: str, path: str, timeout_s: float | None = None) -> tuple[int, bytes]:
        """``(status, body)`` of ``GET url + path``; ``timeout_s`` of silence at most."""
        loop = asyncio.get_running_loop()
        x = await self._exchange(
            url, "GET", path, None, loop.time, None, timeout_s or self.idle_timeout_s
        )
        return x.status, bytes(x.body)

    async def stream_lines(
        self, url: str, path: str, body: bytes, lines: LineSink, clock: Callable[[], float]
    ) -> None:
        """``POST url + path``; each line of the body goes to ``lines(clock(), line)`` as it
        arrives (the time of the read that completed it). ``HttpError`` on a status other than
        200 (with the start of the body), a broken body, or ``idle_timeout_s`` of silence."""
        x = await self._exchange(url, "POST", path, body, clock, lines, self.idle_timeout_s)
        if x.status != 200:
            text = bytes(x.body[:300]).decode("utf-8", errors="replace")
            raise HttpError(f"{x.url}: HTTP {x.status}: {text}")
