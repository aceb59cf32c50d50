"""Calibrate a profile from a live vLLM endpoint: ``chiron profile measure``.

A probe workload runs against an OpenAI-compatible vLLM server and is fitted into the functional
form of ``forms.py``, so the result loads with ``profiles.load(path)`` like the shipped profiles.

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

Every prompt is distinct (``openai_stream.prompt_ids``): vLLM's prefix cache would otherwise
serve repeated prompts from cache (about half the prompt tokens of a naive probe hit it), which
the simulator, like real traffic of distinct prompts, does not have.

An endpoint gives end-to-end times, not per-kernel ones, so the fit fills the form's terms that
these measurements identify and leaves the GEMM, LM-head and embedding terms at zero:

- decode gaps at each probed batch size ``b``: ``D0(b) + D1(b) * sum ctx`` (affine fit);
- times to first token: ``TTFT(b, p) = A + B * b + k_tok * b * p + c_pair * b * p * (p + 1) / 2``;
- the engine's fixed cost per iteration ``c0 = D0(b_min) - k_tok * b_min`` (scheduling, input
  preparation, sampling: paid by prefill and decode iterations alike) goes to ``cpu``;
- ``k_tok / L`` per token of the iteration to ``elementwise``, ``c_pair / L`` per query-key pair
  to ``prefill_attention``, and ``(D0(b) - c0 - k_tok * b) / L`` plus ``D1(b) / L`` per context
  token to ``decode_attention``, tabulated over ``b``;
- the interference cost per arrival less its prompt's token and pair costs, ``c_seq``, is the
  engine's time per prefilled sequence: ``prefill_attention.per_seq_s = c_seq / L``;
- what a lone request's first token costs beyond its engine iteration, ``A + B - c0 - c_seq``, is
  latency outside the engine loop (HTTP, IPC, detokenization, streaming, in the API server
  process): ``frontend.latency_s``, which the simulator adds to first-token and finish times
  without occupying the engine. Counting it as engine time would stall every running request's
  decode by it at each arrival, which overestimates latency badly under load (docs/fidelity.md).

A decode-only iteration is then ``D0(b) + D1(b) * sum ctx``; a lone prefill plus the front-end
latency is ``TTFT(1, p)``. A random 20% of the points (fixed seed) is held out and its mean
absolute percentage error reported per component, as for the shipped profiles.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.openai_stream import prompt_ids, sse_chunks
from chiron_gym.profiles.profile import GEMMS, SCHEMA, parse

_SERIAL = itertools.count(time.time_ns() // 1000)  # distinct prompts, run after run (prefix cache)
WINDOW = 8  # output tokens per decode-gap sample
SKIP = 2  # first output tokens whose gaps may include other requests' prefill
ARRIVAL_PROMPT = 128  # prompt tokens of the interference probe's arrivals
QUIET_S = 0.4  # interference probe: background alone, then arrivals for BUSY_S
BUSY_S = 1.2
HELDOUT_FRACTION = 0.2
SEED = 0


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

    @classmethod
    def quick(cls) -> ProbePlan:
        """A smaller plan (``--quick``; the tests): three batch sizes, two prompt lengths."""
        return cls(
            decode_batches=(1, 4, 16), decode_prompts=(32, 256), prefill_batches=(1, 4), repeats=2
        )

    def clipped(self, max_model_len: int) -> ProbePlan:
        """The plan without prompts that do not fit ``max_model_len`` with their outputs."""
        return ProbePlan(
            self.decode_batches,
            tuple(p for p in self.decode_prompts if p + self.decode_output <= max_model_len),
            self.decode_output,
            self.prefill_batches,
            tuple(p for p in self.prefill_prompts if p + 1 <= max_model_len),
            self.repeats,
            self.interference_rates,
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
        runs ``N`` iterations and ``rate * T`` arrivals, ``T = N * g0 + rate * T * c``."""
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
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "max_model_len": self.max_model_len,
            "root": self.root,
            "kv_blocks": self.kv_blocks,
            "block_size": self.block_size,
            "wall_s": self.wall_s,
            "decode": [[p.batch, p.context_sum, p.gap_s] for p in self.decode],
            "prefill": [[p.batch, p.prompt, p.ttft_s] for p in self.prefill],
            "interference": [
                [p.rate_per_s, p.prompt, p.quiet_gap_s, p.busy_gap_s] for p in self.interference
            ],
        }


class MeasureError(RuntimeError):
    """The endpoint could not be probed; the message says what failed."""


# --------------------------------------------------------------------------------- probing


async def _stream(
    client: Any,
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
    body = {
        "model": model,
        "prompt": prompt_ids(next(_SERIAL), prompt, token_id),
        "max_tokens": output,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        # the cumulative token count on every chunk: exact even if chunks merge (unlike
        # logprobs, which would make each token ~25% slower on a small model)
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }
    marks = [] if marks is None else marks
    total = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            text = (await resp.aread()).decode(errors="replace")[:300]
            raise MeasureError(f"{url}/v1/completions: HTTP {resp.status_code}: {text}")
        async for chunk in sse_chunks(resp):
            if not chunk.get("choices"):
                continue  # the final usage-only chunk
            usage = chunk.get("usage") or {}
            count = int(usage.get("completion_tokens") or total + 1)
            if count > total:
                total = count
                marks.append((time.monotonic() - t0, total))
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
    the median over the probe's requests."""
    n = min(m[-1][1] for m in runs)
    out = []
    for k in range(SKIP, n - WINDOW, WINDOW):
        gaps = [g for g in (_window_gap(m, k, k + WINDOW) for m in runs) if math.isfinite(g)]
        if not gaps:
            continue  # every request got the window's tokens in one chunk: no timing in it
        ctx = batch * (prompt + k + WINDOW / 2.0)
        out.append(DecodePoint(batch, ctx, float(np.median(gaps))))
    if out:  # a window whose chunks all came in one burst times the client, not the engine
        typical = float(np.median([p.gap_s for p in out]))
        out = [p for p in out if p.gap_s >= 0.25 * typical]
    return out


async def _probe(
    url: str, plan: ProbePlan, token_id: int, progress: Any
) -> tuple[str, int, str, list[DecodePoint], list[PrefillPoint], list[InterferencePoint]]:
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        try:
            r = await client.get(f"{url}/v1/models")
            r.raise_for_status()
            card = r.json()["data"][0]
        except Exception as e:
            raise MeasureError(f"{url}/v1/models: cannot read the served model: {e!r}") from e
        model = str(card["id"])
        max_len = int(card.get("max_model_len") or 2048)
        plan = plan.clipped(max_len)
        if not plan.decode_prompts or not plan.prefill_prompts:
            raise MeasureError(f"{url}: max_model_len {max_len} is too small for the probe plan")
        # warm-up: the first requests of a fresh server pay one-off costs (allocations, caches)
        for b in (1, 4, 16, 4, 1):
            await asyncio.gather(
                *(
                    _stream(client, url, model, 128, 32, token_id, time.monotonic())
                    for _ in range(b)
                )
            )
        decode: list[DecodePoint] = []
        prefill: list[PrefillPoint] = []
        for b in plan.decode_batches:
            for p in plan.decode_prompts:
                t0 = time.monotonic()
                runs = await asyncio.gather(
                    *(
                        _stream(client, url, model, p, plan.decode_output, token_id, t0)
                        for _ in range(b)
                    )
                )
                decode += decode_points(b, p, list(runs))
                progress(1)
        for _ in range(plan.repeats):
            for b in plan.prefill_batches:
                for p in plan.prefill_prompts:
                    t0 = time.monotonic()
                    runs = await asyncio.gather(
                        *(_stream(client, url, model, p, 1, token_id, t0) for _ in range(b))
                    )
                    prefill.append(PrefillPoint(b, p, max(m[0][0] for m in runs)))
                    progress(1)
        inter = []
        for rate in plan.interference_rates:
            point = await _interference(client, url, model, token_id, rate, max_len)
            if point is not None:
                inter.append(point)
            progress(1)
        return model, max_len, str(card.get("root") or model), decode, prefill, inter


def _gap_between(marks: list[tuple[float, int]], lo: float, hi: float) -> float:
    """Seconds per token over the chunks that arrived between ``lo`` and ``hi`` seconds."""
    inside = [(t, c) for t, c in marks if lo <= t <= hi]
    if len(inside) < 2 or inside[-1][1] <= inside[0][1]:
        return math.nan
    return (inside[-1][0] - inside[0][0]) / (inside[-1][1] - inside[0][1])


async def _interference(
    client: Any, url: str, model: str, token_id: int, rate: float, max_len: int
) -> InterferencePoint | None:
    """Four background requests decode; after a quiet spell, requests of ``ARRIVAL_PROMPT``
    tokens (one output token) arrive every ``1 / rate`` s; compare the background gaps. ``None``
    when the background produced too few chunks to time (a slow or overloaded host)."""
    out = min(900, max_len - 64)
    t0 = time.monotonic()
    marks: list[list[tuple[float, int]]] = [[] for _ in range(4)]
    background = [
        asyncio.ensure_future(_stream(client, url, model, 64, out, token_id, t0, m)) for m in marks
    ]
    deadline = time.monotonic() + 30.0
    while any(not m or m[-1][1] < SKIP for m in marks) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # the quiet spell starts once every background one decodes
    quiet0 = time.monotonic() - t0
    await asyncio.sleep(QUIET_S)
    busy0 = time.monotonic() - t0
    arrivals = []
    for _ in range(int(BUSY_S * rate)):
        arrivals.append(
            asyncio.ensure_future(_stream(client, url, model, ARRIVAL_PROMPT, 1, token_id, t0))
        )
        await asyncio.sleep(1.0 / rate)
    busy1 = time.monotonic() - t0
    await asyncio.gather(*arrivals)
    await asyncio.gather(*background)
    quiet = [_gap_between(m, quiet0, busy0) for m in marks]
    busy = [_gap_between(m, busy0 + 0.05, busy1) for m in marks]
    q = [g for g in quiet if math.isfinite(g)]
    b = [g for g in busy if math.isfinite(g)]
    if not q or not b:
        return None
    return InterferencePoint(rate, ARRIVAL_PROMPT, float(np.median(q)), float(np.median(b)))


def _cache_config(url: str) -> tuple[int | None, int | None]:
    """``(num_gpu_blocks, block_size)`` from vLLM's ``vllm:cache_config_info`` gauge."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
    except Exception:
        return None, None
    for fam in text_string_to_metric_families(text):
        if fam.name == "vllm:cache_config_info":
            for s in fam.samples:
                blocks = s.labels.get("num_gpu_blocks")
                size = s.labels.get("block_size")
                if blocks not in (None, "None") and size not in (None, "None"):
                    return int(blocks), int(size)
    return None, None


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
    blocks, size = _cache_config(url)
    return Measurements(
        url, model, max_len, root, decode, prefill, inter, blocks, size, time.monotonic() - start
    )


# --------------------------------------------------------------------------------- fitting


@dataclass(frozen=True, slots=True)
class EndpointFit:
    """End-to-end coefficients (seconds, whole model) of the measured engine."""

    per_token_s: float  # k_tok
    prefill_const_s: float  # P0
    prefill_per_seq_s: float  # P1
    prefill_per_pair_s: float  # c_pair
    decode_seqs: tuple[int, ...]
    decode_base_s: tuple[float, ...]  # D0(b)
    decode_per_context_token_s: tuple[float, ...]  # D1(b)
    engine_per_seq_s: float = 0.0  # engine time per prefilled sequence beyond its tokens

    @property
    def engine_const_s(self) -> float:
        """``c0``: the engine's fixed cost per iteration."""
        b = self.decode_seqs[0]
        return max(0.0, self.decode_base_s[0] - self.per_token_s * b)

    @property
    def frontend_latency_s(self) -> float:
        """What a lone request's first token costs beyond its engine iteration."""
        engine = self.engine_const_s + self.engine_per_seq_s
        return max(0.0, self.prefill_const_s + self.prefill_per_seq_s - engine)

    def prefill_s(self, batch: int, prompt: int) -> float:
        pairs = batch * prompt * (prompt + 1) / 2.0
        return (
            self.prefill_const_s
            + self.prefill_per_seq_s * batch
            + self.per_token_s * batch * prompt
            + self.prefill_per_pair_s * pairs
        )

    def decode_s(self, batch: int, context_sum: float) -> float:
        i = self.decode_seqs.index(batch)
        return self.decode_base_s[i] + self.decode_per_context_token_s[i] * context_sum


def _prefill_rows(pts: list[PrefillPoint]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(
        [[1.0, p.batch, p.batch * p.prompt, p.batch * p.prompt * (p.prompt + 1) / 2.0] for p in pts]
    )
    return a, np.array([p.ttft_s for p in pts])


def _nonneg_lstsq(a: np.ndarray, y: np.ndarray, relative: bool = True) -> np.ndarray:
    """Least squares (relative errors when ``relative``), dropping columns that come out
    negative until none does: a small active-set NNLS, enough for four columns."""
    # relative errors, with a floor so that no near-zero sample dominates the fit
    floor = 0.1 * float(np.median(np.abs(y))) if len(y) else 1e-9
    w = 1.0 / np.maximum(np.abs(y), max(floor, 1e-9)) if relative else np.ones_like(y)
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active] * w[:, None], y * w, rcond=None)
        if (sol >= 0).all():
            x[:] = 0.0
            x[active] = sol
            return x
        active.pop(int(np.argmin(sol)))
    return x


def _robust_fit(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``_nonneg_lstsq``, then again without the points whose relative residual is beyond
    three median absolute deviations: host stalls (a GC pause, another process) put a few
    windows at two or three times the typical gap, and least squares would chase them."""
    x = _nonneg_lstsq(a, y)
    rel = (a @ x - y) / np.maximum(np.abs(y), 1e-12)
    mad = float(np.median(np.abs(rel - np.median(rel))))
    keep = np.abs(rel - np.median(rel)) <= 3.0 * max(mad, 1e-3)
    if keep.sum() >= a.shape[1] + 1 and not keep.all():
        x = _nonneg_lstsq(a[keep], y[keep])
    return x


def fit_endpoint(
    decode: list[DecodePoint],
    prefill: list[PrefillPoint],
    interference: list[InterferencePoint] | None = None,
) -> EndpointFit:
    """Fit the end-to-end coefficients (see the module docstring)."""
    if len(prefill) < 4:
        raise MeasureError("need at least 4 prefill points to fit")
    a, y = _prefill_rows(prefill)
    p0, p1, k_tok, c_pair = _robust_fit(a, y)
    seqs = sorted({p.batch for p in decode})
    if not seqs:
        raise MeasureError("no decode points to fit")
    bases, slopes = [], []
    for b in seqs:
        pts = [p for p in decode if p.batch == b]
        ad = np.array([[1.0, p.context_sum] for p in pts])
        yd = np.array([p.gap_s for p in pts])
        if len({p.context_sum for p in pts}) < 2:
            d0, d1 = float(np.median(yd)), 0.0
        else:
            d0, d1 = _robust_fit(ad, yd)
            top = d0 + d1 * max(p.context_sum for p in pts)
            if d0 < 0.5 * float(np.median(yd)) or top > 2.0 * float(np.max(yd)):
                # a context slope that eats the intercept, or overshoots every sample, is noise
                # (a stall in a window), not the engine: every iteration pays its fixed cost
                d0, d1 = float(np.median(yd)), 0.0
        if not d0 + d1 * min(p.context_sum for p in pts) > 0:
            raise MeasureError(
                f"decode probe at {b} sequences: the fitted iteration time is not positive "
                f"(samples {sorted(round(1e3 * v, 3) for v in yd)[:8]}... ms); "
                "the host is too noisy or the client too slow to time the server"
            )
        bases.append(float(d0))
        slopes.append(float(d1))
    per_seq = 0.0
    if interference:
        # engine time per arrival, less its prompt's token and pair costs
        costs = [
            p.engine_s_per_arrival - k_tok * p.prompt - c_pair * p.prompt * (p.prompt + 1) / 2.0
            for p in interference
        ]
        per_seq = max(0.0, float(np.median(costs)))
    return EndpointFit(
        float(k_tok),
        float(p0),
        float(p1),
        float(c_pair),
        tuple(seqs),
        tuple(bases),
        tuple(slopes),
        per_seq,
    )


def _mape(pred: np.ndarray, real: np.ndarray) -> float:
    return float(100.0 * np.mean(np.abs(pred - real) / np.abs(real))) if len(real) else math.nan


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MeasureError(f"{path}: cannot read the model's config.json: {e}") from e
    if not isinstance(cfg, dict):
        raise MeasureError(f"{path}: expected a JSON object")
    return cfg


def model_shape(config: dict[str, Any], name: str, source: str) -> tuple[dict[str, Any], int]:
    """The profile's ``model`` table from a Hugging Face ``config.json``, and the bytes per
    weight."""
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        kv_heads = int(config.get("num_key_value_heads", heads))
        head_dim = int(config.get("head_dim") or hidden // heads)
        ffn = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise MeasureError(f"{source}: missing or bad field {e} (a Llama-style config)") from e
    dtype_bytes = {"float32": 4, "float16": 2, "bfloat16": 2}.get(
        str(config.get("torch_dtype", "bfloat16")), 2
    )
    per_layer = hidden * (heads * head_dim + 2 * kv_heads * head_dim) + heads * head_dim * hidden
    per_layer += 3 * hidden * ffn
    weights = (layers * per_layer + 2 * vocab * hidden) * dtype_bytes
    return {
        "name": name,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "hidden": hidden,
        "ffn": ffn,
        "vocab": vocab,
        "weight_bytes": int(weights),
    }, dtype_bytes


def build_profile(
    m: Measurements,
    *,
    name: str,
    config: dict[str, Any],
    config_source: str,
    gpu_name: str = "cpu",
    memory_bytes: int = 1 << 30,
    cold_start_s: float = 40.0,
) -> dict[str, Any]:
    """The profile document: fit on 80% of the points, held-out error on the rest."""
    shape, dtype_bytes = model_shape(config, m.model, config_source)
    rng = np.random.default_rng(SEED)
    held_d = rng.random(len(m.decode)) < HELDOUT_FRACTION
    held_p = rng.random(len(m.prefill)) < HELDOUT_FRACTION
    fit = fit_endpoint(
        [p for p, h in zip(m.decode, held_d, strict=True) if not h],
        [p for p, h in zip(m.prefill, held_p, strict=True) if not h],
        m.interference,
    )
    test_d = [p for p, h in zip(m.decode, held_d, strict=True) if h and p.batch in fit.decode_seqs]
    test_p = [p for p, h in zip(m.prefill, held_p, strict=True) if h]
    pred_d = np.array([fit.decode_s(p.batch, p.context_sum) for p in test_d])
    real_d = np.array([p.gap_s for p in test_d])
    pred_p = np.array([fit.prefill_s(p.batch, p.prompt) for p in test_p])
    real_p = np.array([p.ttft_s for p in test_p])
    mape = {
        "decode_iteration": _mape(pred_d, real_d),
        "prefill_ttft": _mape(pred_p, real_p),
        "pooled": _mape(np.concatenate([pred_d, pred_p]), np.concatenate([real_d, real_p])),
    }
    layers = shape["layers"]
    block = m.block_size or 16
    bytes_per_token = 2 * layers * shape["kv_heads"] * shape["head_dim"] * dtype_bytes
    blocks = m.kv_blocks or max(1, memory_bytes // (bytes_per_token * block))
    zero = {"floor_s": 0.0, "base_s": 0.0, "slope_s": 0.0, "quantum": 1}
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name,
        "gpu": {"name": gpu_name, "memory_bytes": int(memory_bytes)},
        "model": shape,
        "tensor_parallel": 1,
        "kv": {
            "block_size_tokens": block,
            "gpu_memory_utilization": 1.0,
            "reserve_bytes": 0,
            "bytes_per_token": bytes_per_token,
            "capacity_tokens": blocks * block,
            "capacity_blocks": blocks,
        },
        "frontend": {
            "latency_s": fit.frontend_latency_s,
            "source": "TTFT of a lone request minus its engine iteration (chiron profile measure)",
        },
        "iteration": {
            "cpu": {"const_s": fit.engine_const_s, "slope_s": 0.0},
            "embedding": {"const_s": 0.0, "slope_s": 0.0},
            "lm_head": dict(zero),
            "gemm": {g: dict(zero) for g in GEMMS},
            "elementwise": {"const_s": 0.0, "slope_s": fit.per_token_s / layers},
            "allreduce": None,
            "prefill_attention": {
                "const_s": 0.0,
                "per_seq_s": fit.engine_per_seq_s / layers,
                "per_token_s": 0.0,
                "per_pair_s": fit.prefill_per_pair_s / layers,
                "per_tile_s": 0.0,
            },
            "decode_attention": {
                "seqs": list(fit.decode_seqs),
                "floor_s": [0.0] * len(fit.decode_seqs),
                "base_s": [
                    (d0 - fit.engine_const_s - fit.per_token_s * b) / layers
                    for b, d0 in zip(fit.decode_seqs, fit.decode_base_s, strict=True)
                ],
                "per_context_token_s": [d1 / layers for d1 in fit.decode_per_context_token_s],
            },
        },
        "cold_start": {
            "kind": "fixed",
            "median_s": cold_start_s,
            "sigma": 0.0,
            "observations_s": [cold_start_s],
            "source": "given to chiron profile measure (--cold-start-s), not measured by it",
        },
        "provenance": {
            "sources": [
                {
                    "endpoint": m.endpoint,
                    "model": m.model,
                    "used_for": "every term: end-to-end probe timings (chiron profile measure)",
                },
                {"path": config_source, "used_for": "model shape"},
            ],
            "notes": [
                "measured from a live endpoint: whole-iteration times, client side; GEMM, LM head "
                "and embedding terms are folded into the per-iteration, per-token, per-pair and "
                "decode terms (chiron_gym/profiles/measure.py)",
                f"{len(m.decode)} decode-gap samples, {len(m.prefill)} prefill probes, "
                f"probed in {m.wall_s:.0f} s",
                "KV capacity: vllm:cache_config_info of the endpoint"
                if m.kv_blocks
                else "KV capacity: estimated from --memory-bytes (the endpoint did not report it)",
            ],
        },
        "validation": {
            "heldout_fraction": HELDOUT_FRACTION,
            "seed": SEED,
            "mape_pct": mape,
            "points": {"decode": len(m.decode), "prefill": len(m.prefill)},
        },
    }
    parse(doc, f"<measured profile {name}>")  # the document must load like a shipped one
    return doc


def model_config(m: Measurements, given: str | None) -> tuple[dict[str, Any], str]:
    """The model's ``config.json``: the given path, or the served model's own folder."""
    candidates = [Path(given)] if given else [Path(m.root) / "config.json"]
    for p in candidates:
        if p.is_dir():
            p = p / "config.json"
        if p.exists():
            return _read_config(p), str(p)
    raise MeasureError(
        f"cannot find the model's config.json (tried {', '.join(map(str, candidates))}); "
        "pass --model-config PATH"
    )
