"""One serving instance: a vLLM-V1-like continuous-batching iteration scheduler.

Each iteration (``start_iteration`` ... ``end_iteration``):

1. on a mixed instance, batch requests are swapped out to CPU memory (newest first, at a PCIe
   cost) while an interactive request is waiting and the batch cap or the KV cache keeps it out;
2. every running request is scheduled, oldest first: one token for a decoding request, a chunk of
   the remaining prompt (within the ``max_num_batched_tokens`` budget) for a prefilling one. When
   the KV cache cannot hold a scheduled token, the newest running request is preempted and will be
   recomputed from scratch (vLLM's default ``RECOMPUTE`` preemption);
3. waiting requests are admitted, interactive before batch and FCFS within a class (swapped batch
   requests before fresh ones), while the batch cap, the token budget and free KV blocks allow;
   the first one that does not fit stops admission (head-of-line, as vLLM V1 does).

Lowering the batch cap never drops a running request: it only stops admissions until the
instance is under the cap.

Fast-forward: when an iteration only decodes (no admission, swap or preemption, every request
past its first token), the following iterations differ only by growing contexts, so up to the
next completion, KV exhaustion or external event the whole stretch is advanced in closed form
(``_plan_stretch``). ``fast_forward=False`` runs the same model one iteration per event; the two
give the same timestamps (``tests/sim/test_fast_forward.py``).

Why one module of over 450 lines: the iteration scheduler and its closed-form fast-forward share
the instance's per-request state and must change together (the stretch is exact only while it
mirrors the scheduler step by step); split apart, each half would reach into the other's fields.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from chiron_gym.sim.perf_model import BatchComposition, PerfModel
from chiron_gym.sim.request import Pool, Request, RequestClass


class InstanceState(IntEnum):
    """Lifecycle: starting (cold start, billed) -> ready -> draining (billed) -> stopped."""

    STARTING = 0
    READY = 1
    DRAINING = 2
    STOPPED = 3


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Start-up delay of a new instance, seconds: ``fixed`` or ``lognormal`` (median, sigma)."""

    kind: str = "fixed"
    median_s: float = 60.0
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "lognormal"):
            raise ValueError(f"ColdStart.kind must be 'fixed' or 'lognormal', got {self.kind!r}")
        if not (self.median_s >= 0 and math.isfinite(self.median_s)):
            raise ValueError(f"ColdStart.median_s must be >= 0, got {self.median_s!r}")
        if self.sigma < 0:
            raise ValueError(f"ColdStart.sigma must be >= 0, got {self.sigma!r}")

    def sample(self, rng: np.random.Generator) -> float:
        """One start-up delay; always draws one number so streams stay aligned."""
        z = float(rng.standard_normal())
        if self.kind == "fixed" or self.sigma == 0.0:
            return self.median_s
        return float(self.median_s * math.exp(self.sigma * z))


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """An instance type: one model on ``gpus`` GPUs with its performance model and KV cache."""

    perf_model: PerfModel
    kv_capacity_blocks: int
    block_size_tokens: int = 16
    max_num_batched_tokens: int = 2048
    max_batch_cap: int = 256
    gpus: int = 1
    kv_bytes_per_token: int = 131_072  # Llama-3-8B: 2 (K,V) x 32 layers x 8 heads x 128 x 2 B
    pcie_bytes_per_s: float = 25e9  # PCIe 4.0 x16, effective
    cold_start: ColdStart = field(default_factory=ColdStart)
    # Latency a client sees outside the engine loop (HTTP, tokenization, IPC in and out): added to
    # each request's first-token and finish times; it does not occupy the engine.
    frontend_latency_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.frontend_latency_s >= 0 and math.isfinite(self.frontend_latency_s)):
            raise ValueError("InstanceSpec.frontend_latency_s must be a finite number >= 0")
        positive = ("kv_capacity_blocks", "block_size_tokens", "max_num_batched_tokens")
        for name in (*positive, "max_batch_cap", "gpus", "kv_bytes_per_token"):
            if getattr(self, name) < 1:
                raise ValueError(f"InstanceSpec.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.pcie_bytes_per_s <= 0:
            raise ValueError("InstanceSpec.pcie_bytes_per_s must be > 0")

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens the KV cache holds."""
        return self.kv_capacity_blocks * self.block_size_tokens


def _stretch_elapsed(k: int, base: float, slope: float, s0: float, n: int) -> float:
    """Seconds of ``k`` decode iterations of ``n`` sequences from summed context ``s0``, iteration
    ``j`` costing ``base + slope * (s0 + n * j)``."""
    return k * base + slope * (k * s0 + n * k * (k - 1) / 2.0)


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class Instance:
    """A serving instance and its running, waiting and swapped requests."""

    def __init__(
        self,
        *,
        instance_id: int,
        pool: Pool,
        spec: InstanceSpec,
        batch_cap: int,
        started_s: float,
        ready_s: float,
    ) -> None:
        self.instance_id = instance_id
        self.pool = pool
        self.spec = spec
        self.batch_cap = 1
        self.set_batch_cap(batch_cap)
        self.state = InstanceState.STARTING if ready_s > started_s else InstanceState.READY
        self.started_s = started_s
        self.ready_s = ready_s
        self.stopped_s = math.nan
        self.running: list[Request] = []
        self.waiting: tuple[deque[Request], deque[Request]] = (deque(), deque())  # by class
        self.swapped: deque[Request] = deque()
        self.used_blocks = 0
        self.busy = False  # an iteration (or a fast-forwarded stretch) is in flight
        # For the local control loop (per instance): tokens decoded, and the seconds each waited
        # since its request's previous token, summed (vLLM's inter-token latency histogram's
        # count and sum); their ratio over a period is the ITL requests see here.
        self.decode_tokens = 0
        self.first_tokens = 0  # interactive first tokens, and their TTFT here (from routing)
        self.ttft_sum_s = 0.0
        self.decode_token_time_s = 0.0
        self._iter_start_s = 0.0
        self._iter_decodes = 0
        self.kicked = False  # a start-iteration event is pending
        self.preemptions = 0
        self.swap_outs = 0
        self.new_swaps: list[Request] = []  # swapped out by the last start_iteration
        self.tokens_generated = 0
        self._stretch = 0  # iterations of the stretch in flight (0: a plain iteration)
        # the stretch's closed form (start, base, slope, summed context, sequences) for cutting
        # it short when a request is routed here mid-stretch (``truncate_stretch``)
        self._ff: tuple[float, float, float, float, int] | None = None
        self.epoch = 0  # counts scheduled iteration ends; an event of an older epoch is stale

    def __repr__(self) -> str:
        return (
            f"Instance(id={self.instance_id}, pool={self.pool.name}, state={self.state.name}, "
            f"cap={self.batch_cap}, running={len(self.running)}, waiting={self.num_waiting})"
        )

    # ---- views -------------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        """Requests held but not running (vLLM's ``num_requests_waiting``, swapped included)."""
        return len(self.waiting[0]) + len(self.waiting[1]) + len(self.swapped)

    @property
    def load(self) -> int:
        """Requests held: running plus waiting."""
        return len(self.running) + self.num_waiting

    @property
    def interactive_load(self) -> int:
        """Interactive requests held (a mixed instance evicts batch ones for these)."""
        n = len(self.waiting[RequestClass.INTERACTIVE])
        for r in self.running:
            if r.klass == RequestClass.INTERACTIVE:
                n += 1
        return n

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's ``kv_cache_usage_perc``)."""
        return self.used_blocks / self.spec.kv_capacity_blocks

    def room_for(self, klass: int) -> bool:
        """Whether a request of ``klass`` may be routed here now."""
        if self.state != InstanceState.READY:
            return False
        if klass == RequestClass.INTERACTIVE and self.pool == Pool.MIXED:
            return self.interactive_load < self.batch_cap
        return self.load < self.batch_cap

    def has_work(self) -> bool:
        """Whether anything is running or waiting."""
        return bool(self.running or self.waiting[0] or self.waiting[1] or self.swapped)

    # ---- control -----------------------------------------------------------------------------

    def set_batch_cap(self, cap: int) -> None:
        """Change the most requests run at once (clipped to ``[1, spec.max_batch_cap]``)."""
        self.batch_cap = max(1, min(int(cap), self.spec.max_batch_cap))

    def enqueue(self, request: Request, now: float = math.nan) -> None:
        """Hand a routed request to this instance's waiting queue (at ``now``)."""
        request.routed_s = now
        self.waiting[request.klass].append(request)

    # ---- one iteration -----------------------------------------------------------------------

    def start_iteration(self, now: float, horizon_s: float, fast_forward: bool) -> float | None:
        """Schedule an iteration at ``now``; return its end time (the stretch's, if fast-forwarded).

        Returns ``None`` when nothing can run (the instance idles until it is handed work).
        ``horizon_s`` is the time of the next external event (arrival or control): a stretch never
        ends after it, so whatever happens then sees the same state as in per-iteration mode.
        """
        spec = self.spec
        bs = spec.block_size_tokens
        free = spec.kv_capacity_blocks - self.used_blocks
        swap_tokens = 0
        changed = False
        running = self.running
        if self.pool == Pool.MIXED and self.waiting[RequestClass.INTERACTIVE]:
            swap_tokens, free = self._swap_out_for_interactive(free)
            changed = swap_tokens > 0

        # One pass schedules the running requests and records the batch's composition (in running
        # order: preemption victims are popped from the end, never among those already recorded).
        # `prompt_tokens + generated` is `Request.num_tokens`, inlined: this is the hot path. The
        # admission loop below classifies the same way (decode: one token left and scheduled).
        budget = spec.max_num_batched_tokens
        prefill_new: list[int] = []
        prefill_ctx: list[int] = []
        decode_ctx: list[int] = []
        all_decode = True  # every running request decodes one token, none its first
        i = 0
        n_run = len(running)
        while i < n_run:
            r = running[i]
            c = r.computed
            left = r.prompt_tokens + r.generated - c
            n = left if left < budget else budget
            if n <= 0:
                r.scheduled = 0
                all_decode = False
                i += 1
                continue
            need = -(-(c + n) // bs) - r.blocks
            while need > free:
                victim = running.pop()
                n_run -= 1
                free += victim.blocks
                self._preempt(victim)
                changed = True
                if victim is r:
                    break
            else:
                free -= need
                r.blocks += need
                r.scheduled = n
                budget -= n
                i += 1
                if n == 1 and left == 1:
                    decode_ctx.append(c + 1)
                    if r.generated == 0:
                        all_decode = False
                else:
                    prefill_new.append(n)
                    prefill_ctx.append(c)
                    all_decode = False

        blocked_by_budget = False
        while len(running) < self.batch_cap:
            if budget <= 0:
                blocked_by_budget = self.num_waiting > 0
                break
            queue = self._next_queue()
            if queue is None:
                break
            r = queue[0]
            c = r.computed
            left = r.prompt_tokens + r.generated - c
            n = min(left, budget)
            need = _blocks(c + n, bs) - r.blocks
            if need > free:
                break  # head-of-line: vLLM V1 stops admitting at the first request that won't fit
            queue.popleft()
            if queue is self.swapped:
                swap_tokens += c
            free -= need
            r.blocks += need
            r.scheduled = n
            budget -= n
            if math.isnan(r.admitted_s):
                r.admitted_s = now
            running.append(r)
            changed = True
            if n == 1 and left == 1:
                decode_ctx.append(c + 1)
            elif n > 0:
                prefill_new.append(n)
                prefill_ctx.append(c)

        self.used_blocks = spec.kv_capacity_blocks - free
        self._stretch = 0
        if not running:
            # Nothing fits: cannot happen for requests that fit an empty cache, which the
            # cluster guarantees by rejecting the others on arrival.
            return None
        self.busy = True
        self._iter_start_s = now
        self._iter_decodes = len(decode_ctx)

        decode_only = all_decode and not changed and not blocked_by_budget
        if decode_only and self.pool == Pool.MIXED and self.waiting[RequestClass.INTERACTIVE]:
            # A waiting interactive request may evict batch ones as free KV shrinks during the
            # stretch; that decision is only taken iteration by iteration.
            decode_only = not any(r.klass == RequestClass.BATCH for r in running)
        composition = BatchComposition(prefill_new, prefill_ctx, decode_ctx)
        dt = spec.perf_model.iteration_time_s(composition)
        if swap_tokens:
            dt += swap_tokens * spec.kv_bytes_per_token / spec.pcie_bytes_per_s
        if fast_forward and decode_only:
            return self._plan_stretch(now, dt, decode_ctx, horizon_s)
        return now + dt

    def _plan_stretch(self, now: float, dt0: float, contexts: list[int], horizon_s: float) -> float:
        """Extend a decode-only iteration into a closed-form stretch of ``K`` iterations.

        Iteration ``k`` of the stretch costs ``base + slope * (S0 + n * k)``, so ``K`` iterations
        take ``T(K) = K * base + slope * (K * S0 + n * K * (K - 1) / 2)``. ``K`` stops at the first
        completion, before the iteration whose KV blocks would not fit, at the end of the perf
        model's affine piece, and at the last iteration that ends no later than ``horizon_s``.
        """
        running = self.running
        n = len(running)
        spec = self.spec
        k_max = min(r.output_tokens - r.generated for r in running)
        if k_max <= 1 or now + dt0 > horizon_s:
            return now + dt0
        # KV: K iterations need sum(ceil((computed_i + K) / bs)) blocks; largest K that fits.
        bs = spec.block_size_tokens
        cap = spec.kv_capacity_blocks

        def blocks_after(k: int) -> int:
            computed = np.fromiter((r.computed for r in running), dtype=np.int64, count=n)
            return int(np.sum(-(-(computed + k) // bs)))

        # ceil((c + k) / bs) <= (c + k) / bs + 1: when even that bound fits, skip the exact sum
        bound = (sum(r.computed for r in running) + n * k_max) / bs + n
        if bound > cap and blocks_after(k_max) > cap:
            lo, hi = 1, k_max  # blocks_after(lo) fits (iteration 0 was allocated), hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if blocks_after(mid) <= cap:
                    lo = mid
                else:
                    hi = mid
            k_max = lo
        s0 = float(sum(contexts))
        base, slope, valid_until = spec.perf_model.decode_cost(n, s0)
        if valid_until < math.inf:
            # Iteration k has summed context s0 + n * k; keep the stretch on one affine piece.
            k_max = min(k_max, int((valid_until - s0) // n) + 1)
            if k_max <= 1:
                return now + dt0

        def elapsed(k: int) -> float:
            return _stretch_elapsed(k, base, slope, s0, n)

        if now + elapsed(k_max) > horizon_s:
            # Largest K with now + T(K) <= horizon: solve the quadratic, then settle exactly.
            a = slope * n / 2.0
            b = base + slope * (s0 - n / 2.0)
            room = horizon_s - now
            if a > 0:
                k_est = int((-b + math.sqrt(b * b + 4.0 * a * room)) / (2.0 * a))
            else:
                k_est = int(room / b)
            k = max(1, min(k_est, k_max))
            while k > 1 and now + elapsed(k) > horizon_s:
                k -= 1
            while k < k_max and now + elapsed(k + 1) <= horizon_s:
                k += 1
            k_max = k
        if k_max <= 1:
            return now + dt0
        self._ff = (now, base, slope, s0, n)
        self._hold_stretch(k_max)
        return now + elapsed(k_max)

    def _hold_stretch(self, k: int) -> None:
        """Make the stretch in flight ``k`` iterations long and hold the KV blocks they need."""
        self._stretch = k
        bs = self.spec.block_size_tokens
        used = 0
        for r in self.running:
            r.blocks = -(-(r.computed + k) // bs)
            used += r.blocks
        self.used_blocks = used

    def truncate_stretch(self, now: float) -> float | None:
        """Cut the stretch in flight after the iteration in progress at ``now``; return its new
        end, or ``None`` if it ends there anyway (or none is in flight).

        A request routed here mid-stretch joins at the next iteration boundary, as in
        per-iteration mode: iterations that ended by ``now`` and the one in progress stay.
        """
        k_max = self._stretch
        ff = self._ff
        if not self.busy or k_max <= 1 or ff is None:
            return None
        t0, base, slope, s0, n = ff
        lo, hi = 0, k_max  # t0 + elapsed(lo) <= now < t0 + elapsed(hi)
        if t0 + _stretch_elapsed(hi, base, slope, s0, n) <= now:
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if t0 + _stretch_elapsed(mid, base, slope, s0, n) <= now:
                lo = mid
            else:
                hi = mid
        k = lo + 1
        if k >= k_max:
            return None
        self._hold_stretch(k)
        return t0 + _stretch_elapsed(k, base, slope, s0, n)

    def end_iteration(self, now: float) -> list[Request]:
        """Apply the iteration (or stretch) that ends at ``now``; return finished requests."""
        self.busy = False
        finished: list[Request] = []
        freed = 0
        done_s = now + self.spec.frontend_latency_s
        running = self.running
        k = self._stretch
        if k:  # a stretch: k iterations of every running request decoding
            n = len(running)
            self.decode_tokens += k * n
            self.decode_token_time_s += n * (now - self._iter_start_s)
        elif self._iter_decodes:
            self.decode_tokens += self._iter_decodes
            self.decode_token_time_s += self._iter_decodes * (now - self._iter_start_s)
        if k:
            self._stretch = 0
            self._ff = None
            for r in running:
                r.computed += k
                g = r.generated + k
                r.generated = g
                r.scheduled = 0
                if g >= r.output_tokens:
                    r.finish_s = done_s
                    freed += r.blocks
                    r.blocks = 0
                    finished.append(r)
            self.tokens_generated += k * len(running)
        else:
            for r in running:
                s = r.scheduled
                if s:
                    r.scheduled = 0
                    c = r.computed + s
                    r.computed = c
                    if c == r.prompt_tokens + r.generated:
                        g = r.generated + 1
                        r.generated = g
                        self.tokens_generated += 1
                        if g == 1 and math.isnan(r.first_token_s):
                            r.first_token_s = done_s
                            if r.klass == RequestClass.INTERACTIVE:  # the class with a TTFT SLO
                                self.first_tokens += 1
                                self.ttft_sum_s += done_s - r.routed_s
                        if g >= r.output_tokens:
                            r.finish_s = done_s
                            freed += r.blocks
                            r.blocks = 0
                            finished.append(r)
        if finished:
            self.running = [r for r in running if r.generated < r.output_tokens]
            self.used_blocks -= freed
        return finished

    # ---- helpers -----------------------------------------------------------------------------

    def release_swapped(self, request: Request) -> bool:
        """Take a swapped request off this instance (its CPU copy of the KV cache is dropped, so
        it is recomputed wherever it resumes); False if it is no longer swapped here."""
        try:
            self.swapped.remove(request)
        except ValueError:
            return False
        request.computed = 0
        request.blocks = 0
        request.scheduled = 0
        return True

    def _next_queue(self) -> deque[Request] | None:
        if self.waiting[RequestClass.INTERACTIVE]:
            return self.waiting[RequestClass.INTERACTIVE]
        if self.swapped:
            return self.swapped
        if self.waiting[RequestClass.BATCH]:
            return self.waiting[RequestClass.BATCH]
        return None

    def _preempt(self, r: Request) -> None:
        """Recompute preemption: drop the request's KV and put it first in its waiting queue."""
        r.blocks = 0
        r.computed = 0
        r.scheduled = 0
        r.preemptions += 1
        self.preemptions += 1
        self.waiting[r.klass].appendleft(r)

    def _swap_out_for_interactive(self, free: int) -> tuple[int, int]:
        """Swap newest running batch requests to CPU until waiting interactive ones fit.

        Returns the tokens moved over PCIe and the free blocks after the swaps.
        """
        bs = self.spec.block_size_tokens
        budget = self.spec.max_num_batched_tokens
        running = self.running
        blocks = 0
        moved = 0
        for slots, w in enumerate(self.waiting[RequestClass.INTERACTIVE], start=1):
            blocks += _blocks(min(w.num_tokens - w.computed, budget), bs)
            while len(running) + slots > self.batch_cap or free < blocks:
                victim_at = -1
                for j in range(len(running) - 1, -1, -1):
                    if running[j].klass == RequestClass.BATCH:
                        victim_at = j
                        break
                if victim_at < 0:
                    return moved, free
                victim = running.pop(victim_at)
                free += victim.blocks
                moved += victim.computed
                victim.blocks = 0
                victim.scheduled = 0
                victim.swaps += 1
                self.swap_outs += 1
                self.swapped.append(victim)
                self.new_swaps.append(victim)
        return moved, free
