"""The request ledger: the one account of what became of every request, for both backends.

Every arrived request is, at any time, in exactly one ``Outcome``. The ledger holds a row per
request of the workload (outcome, reject reason, timestamps), the counters of the open report
window, and builds the window's and the episode's ``ClassReport``s from them. A backend (the
simulated ``Cluster``, the real ``VllmBackend``) owns its instances and queues: it tells the ledger
when a request arrives, is refused or finishes, and hands it what only it knows (requests held,
queue lengths, pool reports, GPU-seconds, which ``gpu_seconds`` below adds up for both).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from mypy_extensions import mypyc_attr

from chiron_gym.sim.report import ClassReport, PoolReport, WindowReport, percentiles
from chiron_gym.sim.request import (
    CLASS_NAMES,
    SLO,
    Outcome,
    RejectReason,
    Request,
    RequestClass,
    Workload,
)

# Plain ints for the per-request hot path (comparing a numpy scalar with an IntEnum member goes
# through the enum machinery on every call).
_PENDING, _MET, _LATE = int(Outcome.PENDING), int(Outcome.MET), int(Outcome.LATE)
_REJECTED = int(Outcome.REJECTED)
_OUTCOMES = len(Outcome)
_WRITTEN, _FINISHED = 1, 2  # Ledger._flags: the row written; finished (shifted by the class)


def slo_met(slo: SLO, ttft_s: float, itl_s: float) -> bool:
    """Whether a request's TTFT and mean ITL meet a class's objectives (None: no objective)."""
    return (slo.ttft_s is None or ttft_s <= slo.ttft_s) and (
        slo.itl_s is None or itl_s <= slo.itl_s
    )


def gpu_seconds(
    spans: Iterable[tuple[float, float, float]], end_s: float, t0: float = 0.0
) -> float:
    """GPU-seconds billed within ``[t0, end_s]`` by instances ``(started_s, stopped_s, gpus)``
    (``gpus`` times a price, for priced GPU-seconds).

    An instance counts from the moment it was asked for until it stops (NaN: it has not), cold
    start and draining included.
    """
    total = 0.0
    for started_s, stopped_s, gpus in spans:
        stop = end_s if math.isnan(stopped_s) else min(stopped_s, end_s)
        total += max(0.0, stop - max(started_s, t0)) * gpus
    return total


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Ledger:
    """One row per request of a workload, and the counters of the open report window."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        n = len(workload)
        # arrival times: the workload's, and a closed loop's as its requests are released
        self.arrival_s: npt.NDArray[np.float64] = workload.arrival_s.copy()
        self.outcome: npt.NDArray[np.int8] = np.zeros(n, dtype=np.int8)  # Outcome.PENDING
        self.reject_reason: npt.NDArray[np.int8] = np.zeros(n, dtype=np.int8)
        self.admitted_s: npt.NDArray[np.float64] = np.full(n, np.nan)
        self.first_token_s: npt.NDArray[np.float64] = np.full(n, np.nan)
        self.finish_s: npt.NDArray[np.float64] = np.full(n, np.nan)
        self.preemptions: npt.NDArray[np.int32] = np.zeros(n, dtype=np.int32)
        self.num_arrived = 0
        # Episode counts of the arrived requests, kept as they change (``summary`` reads them
        # instead of counting the columns): per class, per outcome; per class, per reject
        # reason; per class, output tokens of the met. Every request before ``_first_pending``
        # is decided, so pending ones are looked for from there on.
        self._counts: list[list[int]] = [[0] * _OUTCOMES, [0] * _OUTCOMES]
        self._reasons: list[list[int]] = [[0] * len(RejectReason), [0] * len(RejectReason)]
        self._met_tokens: list[int] = [0, 0]
        self._first_pending = 0
        # per row: _WRITTEN once its admission, first token or preemptions were written (a row
        # never written holds NaN, NaN, 0: ``sync`` of a request still at those skips the
        # write), and _FINISHED << class once finished (decided, with a finish time). One byte
        # a row: a snapshot pickles it as it is.
        self._flags: npt.NDArray[np.uint8] = np.zeros(n, dtype=np.uint8)
        self._window_start_s = 0.0
        self._gpu_seconds_before = 0.0
        self._open_window()

    def _open_window(self) -> None:
        # Per class: the window's counts so far, and the TTFT and ITL of requests finished in it.
        self._window = [ClassReport(), ClassReport()]
        self._ttft: list[list[float]] = [[], []]
        self._itl: list[list[float]] = [[], []]

    # ---- what happens to a request -------------------------------------------------------------

    def release(self, idx: int, t_s: float) -> None:
        """A closed loop's request ``idx`` is sent at ``t_s`` (a client's previous one ended)."""
        self.arrival_s[idx] = t_s

    def arrive(self, idx: int, klass: int) -> None:
        """Request ``idx`` (of class ``klass``) arrived; requests arrive in workload order."""
        self.num_arrived = idx + 1
        self._window[klass].arrived += 1
        self._counts[klass][_PENDING] += 1

    def reject(self, idx: int, klass: int, reason: RejectReason) -> bool:
        """Record ``idx`` refused for ``reason``; False (and no change) if already decided."""
        if self.outcome[idx] != _PENDING:
            return False
        self.outcome[idx] = _REJECTED
        self.reject_reason[idx] = int(reason)
        self._counted(klass, _REJECTED)
        self._reasons[klass][int(reason)] += 1
        counters = self._window[klass]
        counters.rejected += 1
        name = reason.name.lower()
        counters.rejected_by_reason[name] = counters.rejected_by_reason.get(name, 0) + 1
        return True

    def finish(
        self,
        idx: int,
        klass: int,
        met: bool,
        output_tokens: int,
        *,
        first_token_s: float,
        finish_s: float,
        ttft_s: float,
        itl_s: float,
    ) -> None:
        """Record a finished request: its times, its latencies in the window, MET or LATE.

        A request already decided (the real backend may hear of one twice: a retried request
        whose first server answered after all) keeps its outcome.
        """
        self.first_token_s[idx] = first_token_s
        self.finish_s[idx] = finish_s
        self._mark_finished(idx, klass, finish_s, _WRITTEN)
        self._decide(idx, klass, met, output_tokens, ttft_s, itl_s)

    def finish_held(self, r: Request, met: bool, ttft_s: float, itl_s: float) -> None:
        """``sync`` and ``finish`` of a request the simulator held, in one call (its hot path)."""
        self.sync(r)
        self.finish_s[r.idx] = r.finish_s
        self._mark_finished(r.idx, r.klass, r.finish_s, 0)
        self._decide(r.idx, r.klass, met, r.output_tokens, ttft_s, itl_s)

    def _decide(
        self, idx: int, klass: int, met: bool, output_tokens: int, ttft_s: float, itl_s: float
    ) -> None:
        if self.outcome[idx] != _PENDING:
            return  # a request is counted once: its first outcome and its first latencies
        self._ttft[klass].append(ttft_s)
        self._itl[klass].append(itl_s)
        counters = self._window[klass]
        if met:
            self.outcome[idx] = _MET
            counters.met += 1
            counters.met_output_tokens += output_tokens
            self._counted(klass, _MET)
            self._met_tokens[klass] += int(self.workload.output_tokens[idx])
        else:
            self.outcome[idx] = _LATE
            counters.late += 1
            self._counted(klass, _LATE)

    def _mark_finished(self, idx: int, klass: int, finish_s: float, also: int) -> None:
        """Flag row ``idx`` finished (of ``klass``) when ``finish_s`` is a time, with ``also``."""
        bit = _FINISHED << klass
        flags = int(self._flags[idx]) | also
        self._flags[idx] = flags & ~bit if math.isnan(finish_s) else flags | bit

    def _counted(self, klass: int, outcome: int) -> None:
        """A pending request of ``klass`` is decided: ``outcome``."""
        counts = self._counts[klass]
        counts[_PENDING] -= 1
        counts[outcome] += 1

    def sync(self, r: Request) -> None:
        """Copy the timestamps and preemptions of a request still held into its row (a row never
        written already holds those of a request not yet admitted: thousands wait in queues)."""
        flags = int(self._flags[r.idx])
        if not flags & _WRITTEN:
            if math.isnan(r.admitted_s) and math.isnan(r.first_token_s) and r.preemptions == 0:
                return
            self._flags[r.idx] = flags | _WRITTEN
        self.admitted_s[r.idx] = r.admitted_s
        self.first_token_s[r.idx] = r.first_token_s
        self.preemptions[r.idx] = r.preemptions

    # ---- reports -------------------------------------------------------------------------------

    def close_window(
        self,
        t_end_s: float,
        held: Sequence[int],
        queued: Sequence[int],
        pools: dict[str, PoolReport],
        gpu_seconds_total: float,
    ) -> WindowReport:
        """Report the window since the previous one and open the next.

        ``held``: requests queued or in an instance per class; ``queued``: those in the global
        queues; ``gpu_seconds_total``: GPU-seconds billed since the episode started.
        """
        classes: dict[str, ClassReport] = {}
        for c in RequestClass:
            report = self._window[c]
            report.pending = held[c]
            report.queued = queued[c]
            report.ttft_s = percentiles(self._ttft[c])
            report.itl_s = percentiles(self._itl[c])
            classes[CLASS_NAMES[c]] = report
        self._open_window()
        gpu_window = gpu_seconds_total - self._gpu_seconds_before
        self._gpu_seconds_before = gpu_seconds_total
        t0 = self._window_start_s
        self._window_start_s = t_end_s
        return WindowReport(
            t_start_s=t0, t_end_s=t_end_s, classes=classes, pools=pools, gpu_seconds=gpu_window
        )

    def summary(
        self,
        queued: Sequence[int],
        overdue_at_s: float | None,
        interactive_ttft_s: float | None = None,
        latencies: bool = True,
        latency_scale: float = 1.0,
    ) -> dict[str, ClassReport]:
        """Per-class outcomes of every request arrived so far (without the TTFT and ITL
        percentiles when ``latencies`` is False: the counts alone are cheap).

        Pending requests are judged overdue at ``overdue_at_s`` (batch: past their deadline;
        interactive: no first token within ``interactive_ttft_s`` of arrival), or not at all when
        it is None (the real backend records a first token only when its request ends).
        ``latency_scale``: wall seconds per timestamp second (the real backend's ``time_scale``:
        its timestamps are in scenario seconds, its latencies in the wall seconds the SLOs and
        the window reports use).
        """
        w = self.workload
        n = self.num_arrived
        out: dict[str, ClassReport] = {}
        outcome = self.outcome
        if overdue_at_s is not None:  # the pending requests (none before ``_first_pending``)
            first = self._first_pending
            while first < n and outcome[first] != _PENDING:
                first += 1
            self._first_pending = first
            pending_at = first + np.flatnonzero(outcome[first:n] == _PENDING)
            pending_class = w.klass[pending_at]
        for c in RequestClass:
            row = self._counts[c]
            report = ClassReport(arrived=sum(row))
            report.met = row[_MET]
            report.late = row[_LATE]
            report.rejected = row[_REJECTED]
            report.pending = row[_PENDING]
            report.queued = queued[c]
            if overdue_at_s is not None:
                now = overdue_at_s
                at = pending_at[pending_class == c]
                if c == RequestClass.BATCH:
                    overdue = w.deadline_s[at] < now
                else:
                    limit = math.inf if interactive_ttft_s is None else interactive_ttft_s
                    overdue = np.isnan(self.first_token_s[at]) & (self.arrival_s[at] + limit < now)
                report.overdue = int(overdue.sum())
            reasons = self._reasons[c]
            report.rejected_by_reason = {
                r.name.lower(): reasons[r] for r in RejectReason if r and reasons[r]
            }
            report.met_output_tokens = self._met_tokens[c]
            if latencies:
                klass = w.klass[:n]
                sel = klass == c
                if w.warmup:  # a closed loop's warm-up is served, not measured
                    sel = sel & (np.arange(n) >= w.warmup)
                decided = outcome[:n]
                done = sel & ((decided == Outcome.MET) | (decided == Outcome.LATE))
                arrival = self.arrival_s[:n][done]
                ttft = self.first_token_s[:n][done] - arrival
                tpot = self._mean_itl(done)
                if latency_scale != 1.0:
                    ttft = ttft * latency_scale
                    tpot = tpot * latency_scale
                report.ttft_s = percentiles(ttft)
                report.itl_s = percentiles(tpot)
                if len(ttft):
                    report.ttft_mean_s = float(np.mean(ttft))
                    several = w.output_tokens[:n][done] > 1
                    if several.any():
                        report.tpot_mean_s = float(np.mean(tpot[several]))
                    span = float(np.max(self.finish_s[:n][done]) - np.min(arrival))
                    if span > 0:
                        tokens = float(np.sum(w.output_tokens[:n][done]))
                        report.output_tokens_per_s = tokens / (span * latency_scale)
            out[CLASS_NAMES[c]] = report
        return out

    def _mean_itl(self, sel: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        n = self.num_arrived
        out = self.workload.output_tokens[:n][sel]
        span = self.finish_s[:n][sel] - self.first_token_s[:n][sel]
        return np.where(out > 1, span / np.maximum(out - 1, 1), 0.0)

    def output_length_stats(self, klass: int) -> tuple[float, float, int]:
        """Mean and standard deviation of output tokens of finished requests, and their count."""
        n = self.num_arrived
        out = self.workload.output_tokens[:n][(self._flags[:n] & (_FINISHED << klass)) != 0]
        if len(out) == 0:
            return (math.nan, math.nan, 0)
        return (float(out.mean()), float(out.std()), len(out))

    def arrived_since(self, since_s: float) -> tuple[Workload, npt.NDArray[np.bool_]]:
        """The requests arrived at or after ``since_s`` (an open loop's), and which of them have
        finished (only those have an output length an operator would know)."""
        n = self.num_arrived
        first = int(np.searchsorted(self.arrival_s[:n], since_s, side="left"))
        return self.workload.rows(first, n), ~np.isnan(self.finish_s[first:n])

    def replace_future(self, future: Workload) -> Workload:
        """Replace the requests yet to arrive by ``future`` (arriving no earlier than the last
        arrival); return the workload they now make with the arrived ones. Rows of arrived
        requests are kept as they are; the new ones start pending."""
        n = self.num_arrived
        if len(future) and n and float(future.arrival_s[0]) < float(self.arrival_s[n - 1]):
            raise ValueError(
                f"replace_future: the new requests start at {float(future.arrival_s[0])} s, "
                f"before the last arrival ({float(self.arrival_s[n - 1])} s)"
            )
        workload = Workload.concat([self.workload.rows(0, n), future])
        m = len(future)
        self.workload = workload
        self.arrival_s = workload.arrival_s.copy()
        self.outcome = np.concatenate([self.outcome[:n], np.zeros(m, dtype=np.int8)])
        self.reject_reason = np.concatenate([self.reject_reason[:n], np.zeros(m, dtype=np.int8)])
        self.admitted_s = np.concatenate([self.admitted_s[:n], np.full(m, np.nan)])
        self.first_token_s = np.concatenate([self.first_token_s[:n], np.full(m, np.nan)])
        self.finish_s = np.concatenate([self.finish_s[:n], np.full(m, np.nan)])
        self.preemptions = np.concatenate([self.preemptions[:n], np.zeros(m, dtype=np.int32)])
        self._flags = np.concatenate([self._flags[:n], np.zeros(m, dtype=np.uint8)])
        return workload


@mypyc_attr(allow_interpreted_subclasses=True)  # the vLLM backend derives from it
class LedgerColumns:
    """The ledger's columns as attributes (``backend.outcome``...): see ``Ledger``. Plain
    properties, not a descriptor class: the compiled core (mypyc) supports these."""

    ledger: Ledger

    @property
    def num_arrived(self) -> int:
        """The ledger's requests arrived so far."""
        return self.ledger.num_arrived

    @property
    def outcome(self) -> npt.NDArray[np.int8]:
        """The ledger's ``Outcome`` per request."""
        return self.ledger.outcome

    @property
    def reject_reason(self) -> npt.NDArray[np.int8]:
        """The ledger's ``RejectReason`` per request."""
        return self.ledger.reject_reason

    @property
    def admitted_s(self) -> npt.NDArray[np.float64]:
        """The ledger's admission times (the simulator only)."""
        return self.ledger.admitted_s

    @property
    def first_token_s(self) -> npt.NDArray[np.float64]:
        """The ledger's first-token times."""
        return self.ledger.first_token_s

    @property
    def finish_s(self) -> npt.NDArray[np.float64]:
        """The ledger's finish times."""
        return self.ledger.finish_s

    @property
    def preemptions(self) -> npt.NDArray[np.int32]:
        """The ledger's preemptions per request (the simulator only)."""
        return self.ledger.preemptions
