"""Real request traces: streaming readers and writers, time and rate scaling, slicing, classes.

Formats (``detect_format`` picks one from the file; ``fmt=`` forces it):

- ``azure``: Azure LLM inference traces 2023/2024, CSV ``TIMESTAMP,ContextTokens,GeneratedTokens``
  with wall-clock timestamps such as ``2023-11-16 18:17:03.9799600``;
- ``mooncake``: JSON lines with ``timestamp`` (ms from start), ``input_length``,
  ``output_length``, ``hash_ids``;
- ``burstgpt``: CSV ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``
  (seconds);
- ``generic``: any CSV with a header, given a column mapping ``time,prompt,output[,label]``
  (time in seconds);
- ServeGen rate files (no header: window start, rate, CV, distribution, shape, scale) are rate
  curves, not request lists: ``read_servegen``.

Every malformed row fails with the file, the line and what was expected. Rows are parsed one by
one (a trace is never held as text), into compact numpy columns.

Why one module of over 450 lines: the reader and the writer of each format sit together, so that
a format is defined in one place and the round trip (``tests/workload/test_trace.py``) checks the
two against each other; the readers share one row-error path and one column accumulator.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from chiron_gym.config import InputError
from chiron_gym.workload.arrivals import MAX_REQUESTS, RateCurve

FORMATS = ("azure", "mooncake", "burstgpt", "generic")


# Tokens per ``hash_ids`` entry of the Mooncake traces (their README: 512-token blocks).
MOONCAKE_BLOCK_TOKENS = 512


class TraceError(InputError):
    """A trace file is malformed; the message names the file, the line and what was expected."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Requests of a trace: arrival (seconds from the first request), lengths, an optional label."""

    arrival_s: npt.NDArray[np.float64]
    prompt_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]
    label: tuple[str, ...] | None = None  # e.g. BurstGPT's Log Type, or a generic column
    # per request, the hashes of its prompt's KV blocks, in order (Mooncake's ``hash_ids``,
    # ``MOONCAKE_BLOCK_TOKENS`` each; equal ids are shareable prefixes); None when it has none
    blocks: tuple[tuple[int, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.arrival_s)

    def take(self, idx: npt.NDArray[np.int64]) -> Trace:
        """The requests at ``idx`` (in that order)."""
        label = None if self.label is None else tuple(self.label[i] for i in idx)
        blocks = None if self.blocks is None else tuple(self.blocks[i] for i in idx)
        return Trace(
            self.arrival_s[idx], self.prompt_tokens[idx], self.output_tokens[idx], label, blocks
        )


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Column names of a generic CSV."""

    time: str
    prompt: str
    output: str
    label: str | None = None

    @classmethod
    def parse(cls, text: str) -> ColumnMap:
        """``"time=t,prompt=in,output=out[,label=kind]"``."""
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in ("time", "prompt", "output", "label"):
                raise TraceError(
                    f"column mapping {text!r}: expected time=COL,prompt=COL,output=COL[,label=COL]"
                )
            fields[key.strip()] = value.strip()
        missing = {"time", "prompt", "output"} - set(fields)
        if missing:
            raise TraceError(f"column mapping {text!r}: missing {', '.join(sorted(missing))}")
        return cls(**fields)


# ------------------------------------------------------------------------------ parsing helpers


# A token count no request has (a typo guard: larger ones overflow the int64 columns).
MAX_TOKENS = 10_000_000


def _shown(value: str) -> str:
    """A field's value for a message (a long one cut short)."""
    return repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value):,} chars)"


def _int(path: Path, line: int, column: str, value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        try:
            f = float(value)
        except ValueError:
            f = math.nan
        if not (math.isfinite(f) and f == int(f)):
            raise TraceError(
                f"{path}:{line}: column {column!r} = {_shown(value)}: expected a non-negative "
                "integer"
            ) from None
        v = int(f)
    if v < 0:
        raise TraceError(f"{path}:{line}: column {column!r} = {_shown(value)}: expected >= 0")
    if v > MAX_TOKENS:
        raise TraceError(
            f"{path}:{line}: column {column!r} = {_shown(value)}: expected at most "
            f"{MAX_TOKENS:,} tokens"
        )
    return v


def _float(path: Path, line: int, column: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise TraceError(f"{path}:{line}: column {column!r} = {value!r}: expected a number")
    return v


def _azure_time(path: Path, line: int, value: str) -> float:
    """``2023-11-16 18:17:03.9799600`` (100 ns digits) -> POSIX seconds."""
    head, _, frac = value.strip().partition(".")
    try:
        base_s = _azure_seconds(head)
        sub = float("0." + frac) if frac else 0.0
        if frac and not frac.isdigit():
            raise ValueError(frac)
    except ValueError:
        raise TraceError(
            f"{path}:{line}: column 'TIMESTAMP' = {value!r}: expected a time like "
            "'2023-11-16 18:17:03.9799600'"
        ) from None
    return base_s + sub


@functools.lru_cache(maxsize=4096)
def _azure_seconds(head: str) -> float:
    """POSIX seconds of ``2023-11-16 18:17:03`` (memoised: a trace's rows share their second
    several at a time; ValueError if it is no such time)."""
    if len(head) == 19 and head[4] == "-" and head[10] == " " and head[13] == ":":
        # the fixed layout, sliced: strptime costs ~20 us a row (a third of B1's trace read)
        base = datetime(
            int(head[0:4]),
            int(head[5:7]),
            int(head[8:10]),
            int(head[11:13]),
            int(head[14:16]),
            int(head[17:19]),
        )
    else:
        base = datetime.strptime(head, "%Y-%m-%d %H:%M:%S")
    return (base - datetime(1970, 1, 1)).total_seconds()


def _csv_rows(
    path: Path, f: TextIO, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(f)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise TraceError(
            f"{path}:1: header {header!r} lacks column(s) {', '.join(map(repr, missing))}"
        )
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:
            raise TraceError(f"{path}:{reader.line_num + 1}: not a CSV row: {e}") from None
        if None in row or any(row[c] is None for c in required):
            raise TraceError(
                f"{path}:{reader.line_num}: expected {len(header)} fields, got a different count"
            )
        yield reader.line_num, row


# ------------------------------------------------------------------------------ readers


def iter_rows(
    path: Path, fmt: str, columns: ColumnMap | None = None
) -> Iterator[tuple[float, int, int, str | None, tuple[int, ...] | None]]:
    """``(time_s, prompt, output, label, blocks)`` per request, in file order, one row at a time
    (``blocks``: Mooncake's ``hash_ids``, else None)."""
    with path.open(newline="", encoding="utf-8-sig") as f:  # a BOM before the header is fine
        if fmt == "azure":
            for line, row in _csv_rows(path, f, ("TIMESTAMP", "ContextTokens", "GeneratedTokens")):
                yield (
                    _azure_time(path, line, row["TIMESTAMP"]),
                    _int(path, line, "ContextTokens", row["ContextTokens"]),
                    _int(path, line, "GeneratedTokens", row["GeneratedTokens"]),
                    None,
                    None,
                )
        elif fmt == "burstgpt":
            cols = ("Timestamp", "Request tokens", "Response tokens")
            for line, row in _csv_rows(path, f, cols):
                yield (
                    _float(path, line, "Timestamp", row["Timestamp"]),
                    _int(path, line, "Request tokens", row["Request tokens"]),
                    _int(path, line, "Response tokens", row["Response tokens"]),
                    row.get("Log Type"),
                    None,
                )
        elif fmt == "mooncake":
            for line, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise TraceError(f"{path}:{line}: not a JSON object: {e.msg}") from None
                if not isinstance(obj, dict):
                    raise TraceError(f"{path}:{line}: expected a JSON object")
                for key in ("timestamp", "input_length", "output_length"):
                    if key not in obj:
                        raise TraceError(f"{path}:{line}: missing field {key!r}")
                ids = obj.get("hash_ids")
                if ids is not None and (
                    not isinstance(ids, list)
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in ids)
                ):
                    raise TraceError(f"{path}:{line}: hash_ids: expected a list of integers")
                yield (
                    _float(path, line, "timestamp", str(obj["timestamp"])) / 1e3,
                    _int(path, line, "input_length", str(obj["input_length"])),
                    _int(path, line, "output_length", str(obj["output_length"])),
                    None,
                    None if ids is None else tuple(ids),
                )
        elif fmt == "generic":
            if columns is None:
                raise TraceError(
                    f"{path}: the generic format needs a column mapping "
                    "(time=COL,prompt=COL,output=COL[,label=COL])"
                )
            req = [columns.time, columns.prompt, columns.output]
            if columns.label:
                req.append(columns.label)
            for line, row in _csv_rows(path, f, req):
                yield (
                    _float(path, line, columns.time, row[columns.time]),
                    _int(path, line, columns.prompt, row[columns.prompt]),
                    _int(path, line, columns.output, row[columns.output]),
                    row[columns.label] if columns.label else None,
                    None,
                )
        else:
            raise TraceError(f"{path}: unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")


def detect_format(path: Path) -> str:
    """The format of ``path`` from its first line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            first = f.readline(4096).strip()
    except OSError as e:
        raise TraceError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise _not_text(path, e) from None
    if first.startswith("{"):
        return "mooncake"
    if "TIMESTAMP" in first and "ContextTokens" in first:
        return "azure"
    if "Request tokens" in first and "Timestamp" in first:
        return "burstgpt"
    raise TraceError(
        f"{path}:1: cannot tell the trace format from {first[:80]!r}; give one of "
        f"{', '.join(FORMATS)} (generic needs a column mapping)"
    )


def read_trace(path: str | Path, fmt: str | None = None, columns: ColumnMap | None = None) -> Trace:
    """Read a whole trace, sorted by arrival, times relative to the first request."""
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"{p}: trace file not found")
    try:
        return _read_trace(p, fmt or detect_format(p), columns)
    except UnicodeDecodeError as e:
        raise _not_text(p, e) from None


def _not_text(p: Path, e: UnicodeDecodeError) -> TraceError:
    """The error for a trace that is not UTF-8 text (a compressed file said so)."""
    with p.open("rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return TraceError(f"{p}: a gzip file; expected a text trace (decompress it with gunzip)")
    return TraceError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); expected a trace")


def _read_trace(p: Path, fmt: str, columns: ColumnMap | None) -> Trace:
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    labels: list[str] = []
    blocks: list[tuple[int, ...]] = []
    has_label = has_blocks = False
    for t, pr, out, lab, ids in iter_rows(p, fmt, columns):
        times.append(t)
        prompts.append(pr)
        outputs.append(out)
        if lab is not None:
            has_label = True
        labels.append("" if lab is None else lab)
        if ids is not None:
            has_blocks = True
        blocks.append(() if ids is None else ids)
    arrival = np.asarray(times, dtype=np.float64)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order]
    if len(arrival):
        arrival = arrival - arrival[0]
    return Trace(
        arrival,
        np.asarray(prompts, dtype=np.int64)[order],
        np.asarray(outputs, dtype=np.int64)[order],
        tuple(labels[i] for i in order) if has_label else None,
        tuple(blocks[i] for i in order) if has_blocks else None,
    )


def read_servegen(path: str | Path) -> RateCurve:
    """A ServeGen rate file: window start (s), rate (req/s), CV, distribution, shape, scale."""
    p = Path(path)
    starts: list[float] = []
    rates: list[float] = []
    cvs: list[float] = []
    with p.open(newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 6:
                raise TraceError(
                    f"{p}:{line}: expected 6 fields (start, rate, cv, distribution, shape, "
                    f"scale), got {len(row)}"
                )
            start = _float(p, line, "window start", row[0])
            rate = _float(p, line, "rate", row[1])
            cv = _float(p, line, "cv", row[2]) if row[2].strip() else 1.0
            if row[3].strip() not in ("", "Gamma", "Weibull"):
                raise TraceError(
                    f"{p}:{line}: distribution = {row[3]!r}: expected Gamma, Weibull or empty"
                )
            if starts and start <= starts[-1]:
                raise TraceError(f"{p}:{line}: window start {start:g} does not increase")
            starts.append(start)
            rates.append(max(rate, 0.0))
            cvs.append(cv if math.isfinite(cv) and cv > 0 else 1.0)
    if not starts:
        raise TraceError(f"{p}: no rows")
    base = starts[0]
    return RateCurve(tuple(s - base for s in starts), tuple(rates), tuple(cvs))


# ------------------------------------------------------------------------------ transforms


def transform(
    trace: Trace,
    rng: np.random.Generator,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    time_scale: float = 1.0,
    rate_scale: float = 1.0,
) -> Trace:
    """Slice ``[start_s, end_s)`` of trace time, rebase to 0, stretch time by ``time_scale``
    (0.5 = twice as fast), then scale the rate by ``rate_scale``: thinning below 1 (each request
    kept with that probability), replication above 1 (``floor`` copies plus one more with the
    fractional probability; each copy shifted by a uniform draw within the mean gap)."""
    if time_scale <= 0 or rate_scale <= 0:
        raise ValueError("time_scale and rate_scale must be > 0")
    t = trace.arrival_s
    keep = t >= start_s
    if end_s is not None:
        keep &= t < end_s
    idx = np.nonzero(keep)[0]
    sliced = trace.take(idx)
    arrival = (sliced.arrival_s - start_s) * time_scale
    sliced = Trace(arrival, sliced.prompt_tokens, sliced.output_tokens, sliced.label, sliced.blocks)
    if rate_scale == 1.0 or len(sliced) == 0:
        return sliced
    n = len(sliced)
    if n * rate_scale > MAX_REQUESTS:
        raise TraceError(
            f"rate_scale = {rate_scale:g}: expected at most {MAX_REQUESTS / n:g} for this trace "
            f"({n:,} requests; {MAX_REQUESTS:,} at most after replication)"
        )
    copies = np.full(n, int(rate_scale))
    frac = rate_scale - int(rate_scale)
    copies += (rng.random(n) < frac).astype(np.int64)
    rep = np.repeat(np.arange(n), copies)
    span = float(arrival[-1] - arrival[0]) if n > 1 else 1.0
    gap = span / max(n - 1, 1)
    first_copy = np.zeros(len(rep), dtype=bool)
    first_copy[np.concatenate([[0], np.cumsum(copies)[:-1]])[copies > 0]] = True
    shift = np.where(first_copy, 0.0, rng.uniform(0.0, gap, size=len(rep)))
    out = sliced.take(rep)
    times = out.arrival_s + shift
    order = np.argsort(times, kind="stable")
    shifted = Trace(times, out.prompt_tokens, out.output_tokens, out.label, out.blocks)
    return shifted.take(order)


@dataclass(frozen=True, slots=True)
class ClassAssignment:
    """Which requests are batch: a random ``batch_fraction``, a rule on lengths
    (``prompt_tokens >= prompt_at_least``), or label values (``batch_labels``)."""

    batch_fraction: float = 0.0
    prompt_at_least: int | None = None
    batch_labels: tuple[str, ...] = ()

    def is_batch(self, trace: Trace, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
        out = np.zeros(len(trace), dtype=bool)
        if self.batch_fraction:
            out |= rng.random(len(trace)) < self.batch_fraction
        if self.prompt_at_least is not None:
            out |= trace.prompt_tokens >= self.prompt_at_least
        if self.batch_labels:
            if trace.label is None:
                raise TraceError("class by label: this trace has no label column")
            labels = set(self.batch_labels)
            out |= np.fromiter((lab in labels for lab in trace.label), dtype=bool, count=len(trace))
        return out


# ------------------------------------------------------------------------------ statistics


def stats(trace: Trace) -> dict[str, Any]:
    """Requests, span, mean rate, inter-arrival CV, and length mean / median / p99."""
    n = len(trace)
    span = float(trace.arrival_s[-1] - trace.arrival_s[0]) if n > 1 else 0.0
    gaps = np.diff(trace.arrival_s)
    cv = float(gaps.std() / gaps.mean()) if len(gaps) > 1 and gaps.mean() > 0 else None
    out: dict[str, Any] = {
        "requests": n,
        "span_s": span,
        "mean_rate_per_s": n / span if span > 0 else None,
        "interarrival_cv": cv,
    }
    for name, col in (("prompt", trace.prompt_tokens), ("output", trace.output_tokens)):
        out[f"{name}_tokens"] = {
            "mean": float(col.mean()) if n else None,
            "median": float(np.median(col)) if n else None,
            "p99": float(np.percentile(col, 99)) if n else None,
        }
    if trace.blocks is not None:
        out["prefix_block_reuse"] = prefix_block_reuse(trace)
    return out


def prefix_block_reuse(trace: Trace) -> float | None:
    """The share of prompt blocks (``Trace.blocks``) seen earlier in the trace, in arrival
    order: the most a prefix cache of unbounded size could serve (Mooncake's hashes chain the
    prefix, so a block seen before has its whole prefix seen before too)."""
    if trace.blocks is None:
        return None
    seen: set[int] = set()
    total = reused = 0
    for ids in trace.blocks:
        for b in ids:
            total += 1
            if b in seen:
                reused += 1
            else:
                seen.add(b)
    return reused / total if total else None


# ------------------------------------------------------------------------------ writers


def write_trace(
    path: str | Path,
    trace: Trace,
    fmt: str,
    *,
    columns: ColumnMap | None = None,
    epoch: datetime = datetime(2023, 11, 16, 18, 0, 0),
) -> Path:
    """Write ``trace`` in ``fmt`` (for tests, and to export synthetic traffic)."""
    p = Path(path)
    with p.open("w", newline="") as f:
        if fmt == "azure":
            w = csv.writer(f)
            w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
            for t, pr, out in zip(
                trace.arrival_s, trace.prompt_tokens, trace.output_tokens, strict=True
            ):
                ticks = round(float(t) * 1e7)  # 100 ns resolution, as the real files
                stamp = epoch + timedelta(seconds=ticks // 10**7)
                w.writerow([f"{stamp:%Y-%m-%d %H:%M:%S}.{ticks % 10**7:07d}", int(pr), int(out)])
        elif fmt == "mooncake":
            for t, pr, out in zip(
                trace.arrival_s, trace.prompt_tokens, trace.output_tokens, strict=True
            ):
                obj = {
                    "timestamp": round(float(t) * 1e3),
                    "input_length": int(pr),
                    "output_length": int(out),
                    "hash_ids": [],
                }
                f.write(json.dumps(obj) + "\n")
        elif fmt == "burstgpt":
            w = csv.writer(f)
            w.writerow(
                [
                    "Timestamp",
                    "Model",
                    "Request tokens",
                    "Response tokens",
                    "Total tokens",
                    "Log Type",
                ]
            )
            labels = trace.label or ("Conversation log",) * len(trace)
            for t, pr, out, lab in zip(
                trace.arrival_s, trace.prompt_tokens, trace.output_tokens, labels, strict=True
            ):
                w.writerow([repr(float(t)), "ChatGPT", int(pr), int(out), int(pr + out), lab])
        elif fmt == "generic":
            cm = columns or ColumnMap(
                "time_s", "prompt", "output", "label" if trace.label else None
            )
            w = csv.writer(f)
            header = [cm.time, cm.prompt, cm.output] + ([cm.label] if cm.label else [])
            w.writerow(header)
            labels = trace.label or ("",) * len(trace)
            for t, pr, out, lab in zip(
                trace.arrival_s, trace.prompt_tokens, trace.output_tokens, labels, strict=True
            ):
                w.writerow([repr(float(t)), int(pr), int(out)] + ([lab] if cm.label else []))
        else:
            raise TraceError(f"unknown trace format {fmt!r}; known: {', '.join(FORMATS)}")
    return p


def write_servegen(path: str | Path, curve: RateCurve) -> Path:
    """Write a rate curve as a ServeGen rate file (Gamma with the piece's CV)."""
    p = Path(path)
    cvs = curve.cvs or (1.0,) * len(curve.starts_s)
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        for s, r, cv in zip(curve.starts_s, curve.rates_per_s, cvs, strict=True):
            if r > 0:
                shape = 1.0 / (cv * cv)
                w.writerow(
                    [repr(s), repr(r), repr(cv), "Gamma", repr(shape), repr(1.0 / (shape * r))]
                )
            else:
                w.writerow([repr(s), "0.0", "", "", "", ""])
    return p
