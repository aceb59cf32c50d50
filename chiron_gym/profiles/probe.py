"""The probe workload of ``chiron profile measure``: requests to a live vLLM endpoint and what they
time (``measure.py`` fits the timings).

Probes (client-side timings, streamed; prompts are lists of token ids, so lengths are exact):

- **decode**: ``b`` requests of a ``p``-token prompt sent together, ``o`` output tokens each with
  ``ignore_eos``. While all ``b`` decode, the gap between consecutive tokens is one decode
  iteration with ``b`` sequences and summed context ``b * (p + k)`` at output token ``k``. Gaps are
  averaged over windows of ``WINDOW`` tokens (robust to the server merging tokens into one chunk).
- **prefill**: ``b`` requests of ``p`` prompt tokens and one output token, sent together; the
  slowest time to first token is the prefill of ``b * p`` tokens, including everything a request
  pays before its first token (HTTP, tokenization, scheduling), as the real backend measures it.
- **interference**: four requests decode; after a quiet spell, requests of ``ARRIVAL_PROMPT``
  tokens arrive every ``1 / rate`` s. With ``g0`` and ``g`` the background decode gaps without
  and with arrivals, each arrival takes ``c = (1 - g0 / g) / rate`` of engine time from the
  running requests (over ``T`` seconds of ``N`` iterations, ``T = N * g0 + rate * T * c``).

A probe whose request fails or goes silent for ``ProbePlan.stall_s`` (a stalled server) is
tried again, up to ``retries`` times, then dropped with a warning that names it; the fit uses
what remains (``measure.fit_endpoint`` refuses, saying so, when too little does). ``GIVE_UP``
probes dropped in a row mean the server stopped answering: ``MeasureError``.

Every prompt is distinct (``openai_stream.prompt_ids``): vLLM's prefix cache would otherwise
serve repeated prompts from cache (about half the prompt tokens of a naive probe hit it), which
the simulator, like real traffic of distinct prompts, does not have.

Why one module of over 450 lines: the plan, the streams it sends and the samples read from
them (the client's clock, or vLLM's own when a busy host delivers every stream whole) are one
procedure, read top to bottom.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from chiron_gym.backends.vllm_client import VllmClient, parse_cache_config, parse_metrics
from chiron_gym.http_lean import HttpError, LeanClient
from chiron_gym.openai_stream import StreamError, completion_body, prompt_ids, stream_completion

_SERIAL = itertools.count(time.time_ns() // 1000)  # distinct prompts, run after run (prefix cache)
WINDOW = 8  # output tokens per decode-gap sample
SKIP = 2  # first output tokens whose gaps may include other requests' prefill
ARRIVAL_PROMPT = 128  # prompt tokens of the interference probe's arrivals
QUIET_S = 0.4  # interference probe: background alone, then arrivals for BUSY_S
BUSY_S = 1.2
GIVE_UP = 3  # probes dropped in a row: the server has stopped answering
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProbePlan:
    """What ``chiron profile measure`` sends."""

    decode_batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    decode_prompts: tuple[int, ...] = (32, 256, 640)
    decode_output: int = 96
    prefill_batches: tuple[int, ...] = (1, 2, 4)
    prefill_prompts: tuple[int, ...] = (16, 64, 128, 256, 512, 896)
    repeats: int = 3
    interference_rates: tuple[float, ...] = (10.0, 20.0, 30.0)
    stall_s: float = 60.0  # silence after which a probe's request is given up
    retries: int = 1  # further tries of a probe that failed, before it is dropped

    @classmethod
    def quick(cls) -> ProbePlan:
        """A smaller plan (``--quick``; the tests): three batch sizes, two prompt lengths."""
        return cls(
            decode_batches=(1, 4, 16), decode_prompts=(32, 256), prefill_batches=(1, 4), repeats=2
        )

    def clipped(self, max_model_len: int) -> ProbePlan:
        """The plan without prompts that do not fit ``max_model_len`` with their outputs."""
        return replace(
            self,
            decode_prompts=tuple(
                p for p in self.decode_prompts if p + self.decode_output <= max_model_len
            ),
            prefill_prompts=tuple(p for p in self.prefill_prompts if p + 1 <= max_model_len),
        )


@dataclass(frozen=True, slots=True)
class DecodePoint:
    batch: int
    context_sum: float
    gap_s: float


@dataclass(frozen=True, slots=True)
class PrefillPoint:
    batch: int
    prompt: int
    ttft_s: float


@dataclass(frozen=True, slots=True)
class InterferencePoint:
    """Background decode gaps without and with a stream of arriving requests."""

    rate_per_s: float
    prompt: int
    quiet_gap_s: float
    busy_gap_s: float

    @property
    def engine_s_per_arrival(self) -> float:
        """Engine time each arrival takes from the running requests: over a window the engine
        runs ``N`` iterations and ``rate * T`` arrivals, ``T = N * g0 + rate * T * c``. NaN
        when a gap is not a positive time (a degenerate timing: it measures nothing)."""
        gaps = (self.quiet_gap_s, self.busy_gap_s, self.rate_per_s)
        if not all(math.isfinite(g) and g > 0 for g in gaps):
            return math.nan
        return max(0.0, 1.0 - self.quiet_gap_s / self.busy_gap_s) / self.rate_per_s


@dataclass
class Measurements:
    """Everything a probe run observed, enough to refit offline (``--save-raw``)."""

    endpoint: str
    model: str
    max_model_len: int
    root: str = ""
    decode: list[DecodePoint] = field(default_factory=list)
    prefill: list[PrefillPoint] = field(default_factory=list)
    interference: list[InterferencePoint] = field(default_factory=list)
    kv_blocks: int | None = None
    block_size: int | None = None
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The scalars, then each probe's points as rows (``--save-raw``)."""
        scalars = (
            "endpoint",
            "model",
            "max_model_len",
            "root",
            "kv_blocks",
            "block_size",
            "wall_s",
        )
        return {
            **{k: getattr(self, k) for k in scalars},
            "decode": [[p.batch, p.context_sum, p.gap_s] for p in self.decode],
            "prefill": [[p.batch, p.prompt, p.ttft_s] for p in self.prefill],
            "interference": [
                [p.rate_per_s, p.prompt, p.quiet_gap_s, p.busy_gap_s] for p in self.interference
            ],
        }


class MeasureError(RuntimeError):
    """The endpoint could not be probed; the message says what failed."""


# --------------------------------------------------------------------------------- probing


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _all(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every result, or the first error with the other requests cancelled (their connections
    closed): a stalled request does not outlive its probe."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except BaseExceptionGroup as eg:
        raise _first(eg) from None
    return [t.result() for t in tasks]


class _Attempts:
    """Runs each probe up to ``1 + retries`` times; drops one that never succeeds, with a
    warning naming it, and refuses after ``GIVE_UP`` dropped in a row."""

    def __init__(self, url: str, retries: int) -> None:
        self.url = url
        self.retries = retries
        self.in_row = 0
        self.dropped: list[str] = []

    async def run(self, what: str, make: Callable[[], Awaitable[T]]) -> T | None:
        error: MeasureError | None = None
        for _ in range(1 + self.retries):
            try:
                out = await make()
            except MeasureError as e:
                error = e
                continue
            self.in_row = 0
            return out
        self.dropped.append(what)
        self.in_row += 1
        if self.in_row >= GIVE_UP:
            raise MeasureError(
                f"{self.url}: the server stopped answering ({GIVE_UP} probes in a row failed "
                f"{1 + self.retries} times each; last: {what}: {error})"
            )
        warnings.warn(
            f"{what} dropped after {1 + self.retries} tries: {error}; fitting without it",
            stacklevel=2,
        )
        return None


async def _stream(
    client: LeanClient,
    url: str,
    model: str,
    prompt: int,
    output: int,
    token_id: int,
    t0: float,
    marks: list[tuple[float, int]] | None = None,
) -> list[tuple[float, int]]:
    """``(seconds since t0, cumulative tokens)`` at each streamed chunk of one request (into
    ``marks`` as they come, when given)."""
    # the cumulative token count on every chunk: exact even if chunks merge (unlike logprobs,
    # which would make each token ~25% slower on a small model); read without decoding the chunk
    body = completion_body(
        model, prompt_ids(next(_SERIAL), prompt, token_id), output, usage_per_chunk=True
    )
    marks = [] if marks is None else marks
    try:
        await stream_completion(client, url, body, time.monotonic, marks, t0)
    except (HttpError, StreamError) as e:
        raise MeasureError(str(e)) from e
    total = marks[-1][1] if marks else 0
    if total != output:
        raise MeasureError(
            f"{url}: asked for {output} tokens with ignore_eos, got {total} "
            "(is max_model_len too small for the probe?)"
        )
    return marks


def _window_gap(marks: list[tuple[float, int]], lo: int, hi: int) -> float:
    """Seconds per token between the first chunk at or after token ``lo`` and the last at or
    before token ``hi``: exact even when the server merged tokens into one chunk (a slow
    client), since each chunk carries the cumulative count. NaN without two such chunks."""
    first = next(((t, c) for t, c in marks if c >= lo), None)
    last = next(((t, c) for t, c in reversed(marks) if c <= hi), None)
    if first is None or last is None or last[1] <= first[1] or last[0] <= first[0]:
        return math.nan
    return (last[0] - first[0]) / (last[1] - first[1])


def decode_points(
    batch: int, prompt: int, runs: list[list[tuple[float, int]]]
) -> list[DecodePoint]:
    """Decode-gap samples of one probe: windows of ``WINDOW`` tokens after the first ``SKIP``,
    the median over the probe's requests. Chunks read at one instant (one read from the
    socket) count as one, the burst's last: its earlier tokens were made before it arrived, so
    they time nothing. When no window has timing (a busy host's client or API server reads the
    stream in bursts longer than a window, or the server sends more than a window per chunk),
    the windows are doubled until one has, up to one window from token ``SKIP`` to the end: a
    coarser sample, not none. Streams whose ``WINDOW``-token windows have timing give what
    they gave before."""
    n = min(m[-1][1] for m in runs)
    runs = [_burst_ends(m) for m in runs]
    out = _windows(batch, prompt, runs, WINDOW, n - WINDOW)
    window = WINDOW
    while not out and window < n - SKIP:
        window = min(2 * window, n - SKIP)
        out = _windows(batch, prompt, runs, window, n - window + 1)  # the last token counts
    return out


def _burst_ends(marks: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """``marks`` with each run of equal times reduced to its last (largest) count."""
    return [m for i, m in enumerate(marks) if i + 1 == len(marks) or marks[i + 1][0] != m[0]]


def _windows(
    batch: int, prompt: int, runs: list[list[tuple[float, int]]], window: int, stop: int
) -> list[DecodePoint]:
    """Windows of ``window`` tokens starting at ``SKIP``, ``SKIP + window``, ... before ``stop``."""
    out = []
    for k in range(SKIP, stop, window):
        gaps = [g for g in (_window_gap(m, k, k + window) for m in runs) if math.isfinite(g)]
        if not gaps:
            continue  # every request got the window's tokens in one chunk: no timing in it
        ctx = batch * (prompt + k + window / 2.0)
        out.append(DecodePoint(batch, ctx, float(np.median(gaps))))
    if out:  # a window whose chunks all came in one burst times the client, not the engine
        typical = float(np.median([p.gap_s for p in out]))
        out = [p for p in out if p.gap_s >= 0.25 * typical]
    return out


async def _probe(
    url: str, plan: ProbePlan, token_id: int, progress: Any
) -> tuple[str, int, str, list[DecodePoint], list[PrefillPoint], list[InterferencePoint]]:
    client = LeanClient(idle_timeout_s=plan.stall_s)
    try:
        status, text = await client.get(url, "/v1/models", timeout_s=30.0)
        if status != 200:
            raise HttpError(f"HTTP {status}")
        card = json.loads(text)["data"][0]
    except Exception as e:
        raise MeasureError(f"{url}/v1/models: cannot read the served model: {e!r}") from e
    model = str(card["id"])
    max_len = int(card.get("max_model_len") or 2048)
    plan = plan.clipped(max_len)
    if not plan.decode_prompts or not plan.prefill_prompts:
        raise MeasureError(f"{url}: max_model_len {max_len} is too small for the probe plan")
    tries = _Attempts(url, plan.retries)

    def streams(b: int, p: int, o: int) -> Callable[[], Awaitable[list[list[tuple[float, int]]]]]:
        def make() -> Awaitable[list[list[tuple[float, int]]]]:
            t0 = time.monotonic()
            return _all([_stream(client, url, model, p, o, token_id, t0) for _ in range(b)])

        return make

    # warm-up: the first requests of a fresh server pay one-off costs (allocations, caches)
    for b in (1, 4, 16, 4, 1):
        await tries.run(f"warm-up of {b} requests", streams(b, 128, 32))
    decode: list[DecodePoint] = []
    prefill: list[PrefillPoint] = []
    for b in plan.decode_batches:
        for p in plan.decode_prompts:
            what = f"decode probe ({b} x {p}-token prompts)"
            before = await _itl_counters(url)
            runs = await tries.run(what, streams(b, p, plan.decode_output))
            if runs is not None:
                points = decode_points(b, p, runs)
                if not points:  # every stream came whole: time the engine by its own clock
                    points = engine_decode_point(
                        b, p, plan.decode_output, before, await _itl_counters(url)
                    )
                    warnings.warn(
                        f"{what}: each stream came in one read (a busy host); "
                        + (
                            "its decode gap is vLLM's own mean inter-token latency over it"
                            if points
                            else "no decode timing from it"
                        ),
                        stacklevel=1,  # (2 would name asyncio's frame: this runs in the loop)
                    )
                decode += points
            progress(1)
    for _ in range(plan.repeats):
        for b in plan.prefill_batches:
            for p in plan.prefill_prompts:
                runs = await tries.run(f"prefill probe ({b} x {p} tokens)", streams(b, p, 1))
                if runs is not None:
                    prefill.append(PrefillPoint(b, p, max(m[0][0] for m in runs)))
                progress(1)
    inter = []
    for rate in plan.interference_rates:

        def once(rate: float = rate) -> Awaitable[InterferencePoint | None]:
            return _interference(client, url, model, token_id, rate, max_len)

        point = await tries.run(f"interference probe at {rate:g} arrivals/s", once)
        if point is not None:
            inter.append(point)
        progress(1)
    return model, max_len, str(card.get("root") or model), decode, prefill, inter


def _gap_between(marks: list[tuple[float, int]], lo: float, hi: float) -> float:
    """Seconds per token over the chunks that arrived between ``lo`` and ``hi`` seconds."""
    inside = [(t, c) for t, c in marks if lo <= t <= hi]
    if len(inside) < 2 or inside[-1][1] <= inside[0][1] or inside[-1][0] <= inside[0][0]:
        return math.nan  # no two chunks apart in time: nothing to time (a busy host's burst)
    return (inside[-1][0] - inside[0][0]) / (inside[-1][1] - inside[0][1])


async def _interference(
    client: LeanClient, url: str, model: str, token_id: int, rate: float, max_len: int
) -> InterferencePoint | None:
    """Four background requests decode; after a quiet spell, requests of ``ARRIVAL_PROMPT``
    tokens (one output token) arrive every ``1 / rate`` s; compare the background gaps. ``None``
    when the background produced too few chunks to time (a slow or overloaded host)."""
    out = min(900, max_len - 64)
    t0 = time.monotonic()
    marks: list[list[tuple[float, int]]] = [[] for _ in range(4)]
    try:
        async with asyncio.TaskGroup() as tg:  # a failed request cancels the others
            for m in marks:
                tg.create_task(_stream(client, url, model, 64, out, token_id, t0, m))
            deadline = time.monotonic() + 30.0
            while any(not m or m[-1][1] < SKIP for m in marks) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the quiet spell starts once every one decodes
            quiet0 = time.monotonic() - t0
            await asyncio.sleep(QUIET_S)
            busy0 = time.monotonic() - t0
            for _ in range(int(BUSY_S * rate)):
                tg.create_task(_stream(client, url, model, ARRIVAL_PROMPT, 1, token_id, t0))
                await asyncio.sleep(1.0 / rate)
            busy1 = time.monotonic() - t0
    except BaseExceptionGroup as eg:
        raise _first(eg) from None
    quiet = [_gap_between(m, quiet0, busy0) for m in marks]
    busy = [_gap_between(m, busy0 + 0.05, busy1) for m in marks]
    q = [g for g in quiet if math.isfinite(g)]
    b = [g for g in busy if math.isfinite(g)]
    if not q or not b:
        return None
    return InterferencePoint(rate, ARRIVAL_PROMPT, float(np.median(q)), float(np.median(b)))


async def _metrics_text(url: str) -> str | None:
    """The server's ``/metrics`` text, or ``None`` when it does not answer."""
    try:
        return await VllmClient(request_timeout_s=10.0).metrics_text(url, timeout_s=10.0)
    except Exception:
        return None


async def _itl_counters(url: str) -> tuple[float, float] | None:
    """``(sum, count)`` of vLLM's inter-token-latency histogram (``None`` when ``/metrics``
    does not answer or has none)."""
    text = await _metrics_text(url)
    if text is None:
        return None
    m = parse_metrics(text)
    if "itl_sum" not in m or "itl_count" not in m:
        return None
    return m["itl_sum"], m["itl_count"]


def engine_decode_point(
    batch: int,
    prompt: int,
    output: int,
    before: tuple[float, float] | None,
    after: tuple[float, float] | None,
) -> list[DecodePoint]:
    """One decode-gap sample of a probe from vLLM's inter-token-latency histogram read before and
    after it: the mean gap between two tokens of a request, stamped by the engine core when it
    made them, so a client or API server that read the streams late does not change it. Its
    context is the probe's mid-stream one. Empty without a positive difference of both."""
    if before is None or after is None:
        return []
    total, count = after[0] - before[0], after[1] - before[1]
    if not (count > 0 and total > 0 and math.isfinite(total)):
        return []
    return [DecodePoint(batch, batch * (prompt + output / 2.0), total / count)]


async def _cache_config(url: str) -> tuple[int | None, int | None]:
    """``(num_gpu_blocks, block_size)`` from vLLM's ``vllm:cache_config_info`` gauge (``None,
    None`` when ``/metrics`` does not answer or has none)."""
    text = await _metrics_text(url)
    return (None, None) if text is None else parse_cache_config(text)


def probe(
    url: str, plan: ProbePlan | None = None, *, token_id: int = 5, show_progress: bool = True
) -> Measurements:
    """Run the probe workload against ``url`` (one server, otherwise idle)."""
    plan = plan or ProbePlan()
    url = url.rstrip("/")
    total = len(plan.decode_batches) * len(plan.decode_prompts)
    total += plan.repeats * len(plan.prefill_batches) * len(plan.prefill_prompts)
    total += len(plan.interference_rates)
    bar: Any = None
    if show_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=f"probing {url}", unit="probe")
        except ImportError:  # pragma: no cover - tqdm ships with the rl extra
            bar = None
    start = time.monotonic()
    try:
        model, max_len, root, decode, prefill, inter = asyncio.run(
            _probe(url, plan, token_id, bar.update if bar else (lambda n: None))
        )
    finally:
        if bar is not None:
            bar.close()
    blocks, size = asyncio.run(_cache_config(url))
    return Measurements(
        url, model, max_len, root, decode, prefill, inter, blocks, size, time.monotonic() - start
    )
