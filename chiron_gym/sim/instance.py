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

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.perf_model import BatchComposition, PerfModel
from chiron_gym.sim.prefix_cache import PrefixCache
from chiron_gym.sim.request import Pool, Request, RequestClass


class InstanceState(IntEnum):
    """Lifecycle: starting (cold start, billed) -> ready -> draining (billed) -> stopped."""

    STARTING = 0
    READY = 1
    DRAINING = 2
    STOPPED = 3


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class ColdStart:
    """Start-up delay of a new instance, seconds: ``fixed`` or ``lognormal`` (median, sigma).

    ``phases`` (optional) says what the median is made of, in order (e.g. container, weights,
    compile, CUDA graphs, as vLLM's start-up logs time them): the median is then their sum.
    """

    kind: str = "fixed"
    median_s: float = 60.0
    sigma: float = 0.0
    phases: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name, seconds in self.phases:
            if not (seconds >= 0 and math.isfinite(seconds)):
                raise ValueError(f"ColdStart phase {name!r} must be >= 0 seconds, got {seconds!r}")
        if self.kind not in ("fixed", "lognormal"):
            raise ValueError(f"ColdStart.kind must be 'fixed' or 'lognormal', got {self.kind!r}")
        if not (self.median_s >= 0 and math.isfinite(self.median_s)):
            raise ValueError(f"ColdStart.median_s must be >= 0, got {self.median_s!r}")
        if self.sigma < 0:
            raise ValueError(f"ColdStart.sigma must be >= 0, got {self.sigma!r}")
        if self.phases and not math.isclose(
            sum(s for _, s in self.phases), self.median_s, rel_tol=1e-12, abs_tol=1e-12
        ):
            raise ValueError("ColdStart.median_s must be the sum of its phases")

    @classmethod
    def of_phases(
        cls, phases: tuple[tuple[str, float], ...], kind: str = "fixed", sigma: float = 0.0
    ) -> ColdStart:
        """A cold start whose median is the sum of ``phases``."""
        return cls(kind=kind, median_s=sum(s for _, s in phases), sigma=sigma, phases=phases)

    def sample(self, rng: np.random.Generator) -> float:
        """One start-up delay; always draws one number so streams stay aligned."""
        z = float(rng.standard_normal())
        if self.kind == "fixed" or self.sigma == 0.0:
            return self.median_s
        return float(self.median_s * math.exp(self.sigma * z))


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
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
    # vLLM's automatic prefix caching (``--enable-prefix-caching``): prompt blocks whose hashes
    # the workload gives are reused across requests (``sim/prefix_cache.py``)
    prefix_caching: bool = False

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


_CHUNK, _SAMPLED, _FINISHED = 0, 1, 2  # what the end of an iteration did to a request


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Instance:
    """A serving instance and its running, waiting and swapped requests.

    Steady decoders (running requests past their first token that decode one token per
    iteration, usually nearly all of them) are kept as aggregates over a per-instance token clock
    ``tick``: their count, summed context, KV blocks, a histogram of their context modulo the block
    size (which of them need a new block at a given tick) and a heap of the ticks at which they
    finish. A steady request's ``computed`` and ``generated`` are as of tick ``mark`` and are
    ``tick - mark`` larger now (``sync_steady`` writes them out). An iteration in which every
    request gets its whole share of the token budget and of the free KV blocks therefore costs
    O(requests that are not steady); any other (a preemption, a starved request, a swap on a mixed
    instance) dissolves the aggregates and runs the per-request scheduler, which is also what the
    per-iteration reference mode runs throughout (``aggregate=False`` forces it in fast-forward
    mode too: the tests compare the two bit for bit).
    """

    def __init__(
        self,
        *,
        instance_id: int,
        pool: Pool,
        spec: InstanceSpec,
        batch_cap: int,
        started_s: float,
        ready_s: float,
        aggregate: bool = True,
        prefix_unit_tokens: int = 0,
    ) -> None:
        """``prefix_unit_tokens``: tokens per prompt hash of the workload (0: none); with the
        spec's ``prefix_caching`` it turns the prefix cache on."""
        self.instance_id = instance_id
        self.aggregate = aggregate
        self.pool = pool
        self.spec = spec
        # the spec's figures the hot path reads, as native attributes (the spec is a plain class)
        self._bs = spec.block_size_tokens
        self._kv_blocks = spec.kv_capacity_blocks
        self._token_budget = spec.max_num_batched_tokens
        self._perf = spec.perf_model
        self._frontend_s = spec.frontend_latency_s
        self.batch_cap = 1
        self.set_batch_cap(batch_cap)
        self.state = InstanceState.STARTING if ready_s > started_s else InstanceState.READY
        self.started_s = started_s
        self.ready_s = ready_s
        self.stopped_s = math.nan
        self.running: list[Request] = []  # in admission order (``Request.order``)
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
        # The steady decoders' aggregates (see the class docstring).
        self.tick = 0
        self._steady_n = 0
        self._steady_computed = 0  # their summed ``computed`` at ``tick``
        self._steady_blocks = 0  # their KV blocks between iterations: sum of ceil(computed / bs)
        self._phase = [0] * self._bs  # how many have (computed - tick) % bs == q
        self._done_at: list[tuple[int, int, Request]] = []  # heap: (last tick, order, request)
        self.active: list[Request] = []  # the running requests that are not steady, in order
        self._exact = False  # the iteration in flight runs the per-request scheduler
        self._rebuild = False  # ... and the aggregates are rebuilt when it ends
        self._admitted = 0  # admissions so far: the next ``Request.order``
        self._interactive_running = 0
        self.cache: PrefixCache | None = None
        if spec.prefix_caching and prefix_unit_tokens:
            if prefix_unit_tokens % self._bs:
                raise ValueError(
                    f"prompt hashes of {prefix_unit_tokens} tokens are not a whole number of "
                    f"KV blocks ({self._bs} tokens)"
                )
            self.cache = PrefixCache(
                self._kv_blocks, prefix_unit_tokens, prefix_unit_tokens // self._bs
            )

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
        return self._interactive_running + len(self.waiting[RequestClass.INTERACTIVE])

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's ``kv_cache_usage_perc``)."""
        return self.used_blocks / self._kv_blocks

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

    def sync_steady(self) -> None:
        """Write the steady requests' ``computed``, ``generated`` and ``blocks`` out (they are
        kept as aggregates); for tests and inspection, the simulation does not need it."""
        bs = self._bs
        ahead = (self._stretch or 1) if self.busy and not self._exact else 0
        for r in self.running:
            if r.mark >= 0:
                c = self._sync(r)
                r.blocks = -(-(c + ahead) // bs)

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
        if not (fast_forward and self.aggregate):
            return self._start_exact(now, horizon_s, fast_forward)
        spec = self.spec
        bs = self._bs
        free = self._kv_blocks - self.used_blocks
        interactive_waits = self.pool == Pool.MIXED and bool(self.waiting[RequestClass.INTERACTIVE])
        if interactive_waits and self._swap_due(free):
            return self._start_exact(now, horizon_s, fast_forward)
        budget = self._token_budget
        n_dec = self._steady_n
        tokens = n_dec  # one each for the steady requests, then the others' whole shares
        active = self.active
        for r in active:
            tokens += r.prompt_tokens + r.generated - r.computed
        shares = None if tokens <= budget else self._shares(budget)
        if shares is not None:
            if not shares:
                return self._start_exact(now, horizon_s, fast_forward)  # a steady one starves
            tokens = n_dec + sum(shares)
        need = self._phase[-self.tick % bs] if n_dec else 0  # steady ones at a block boundary
        for j, r in enumerate(active):
            n = r.prompt_tokens + r.generated - r.computed if shares is None else shares[j]
            if n > 0:
                need += -(-(r.computed + n) // bs) - r.blocks
        if need > free:
            # someone would be preempted: who depends on the running order
            return self._start_exact(now, horizon_s, fast_forward)
        free -= need
        ctx_sum = self._steady_computed + n_dec
        prefill_new: list[int] = []
        prefill_ctx: list[int] = []
        all_decode = True
        for j, r in enumerate(active):
            c = r.computed
            left = r.prompt_tokens + r.generated - c
            n = left if shares is None else shares[j]
            if n <= 0:
                r.scheduled = 0
                all_decode = False
                continue
            r.blocks = -(-(c + n) // bs)
            r.scheduled = n
            if n == 1 and left == 1:
                n_dec += 1
                ctx_sum += c + 1
                if r.generated == 0:
                    all_decode = False
            else:
                prefill_new.append(n)
                prefill_ctx.append(c)
                all_decode = False
        had_active = bool(active)
        free, n_dec, ctx_sum, swap_tokens, changed, blocked = self._admit(
            now,
            free,
            self._token_budget - tokens,
            prefill_new,
            prefill_ctx,
            n_dec,
            ctx_sum,
        )
        self.used_blocks = self._kv_blocks - free
        self._stretch = 0
        self._exact = False
        if not self.running:
            return None
        self.busy = True
        self._iter_start_s = now
        self._iter_decodes = n_dec
        dt = self._perf.iteration_time_s(BatchComposition(prefill_new, prefill_ctx, n_dec, ctx_sum))
        if swap_tokens:
            dt += swap_tokens * spec.kv_bytes_per_token / spec.pcie_bytes_per_s
        decode_only = all_decode and not changed and not blocked and not had_active
        if decode_only and interactive_waits and self.waiting[RequestClass.INTERACTIVE]:
            # A waiting interactive request may evict batch ones as free KV shrinks during the
            # stretch; that decision is only taken iteration by iteration.
            decode_only = self._interactive_running == len(self.running)
        if decode_only:
            k_first = self._done_at[0][0] - self.tick  # iterations to the first completion
            return self._plan_stretch(
                now,
                dt,
                n_dec,
                float(ctx_sum),
                k_first,
                self._steady_blocks_after,
                # at most a block per bs each
                self._steady_blocks - self._shared() + n_dec * -(-k_first // bs),
                horizon_s,
            )
        return now + dt

    def _shares(self, budget: int) -> list[int]:
        """The token shares of the non-steady running requests when their whole shares exceed
        ``budget``: the budget goes out in running order, one token to each steady request and
        ``min(left, rest)`` to each other. Empty if a steady request would get none (then who
        advances is no longer uniform)."""
        running = self.running
        shares: list[int] = []
        steady_seen = 0
        for j, r in enumerate(self.active):
            before = bisect.bisect_left(running, r.order, key=_running_order) - j
            budget -= before - steady_seen
            steady_seen = before
            if budget < 0:
                return []
            left = r.prompt_tokens + r.generated - r.computed
            n = left if left < budget else budget
            shares.append(n)
            budget -= n
        if budget < self._steady_n - steady_seen:
            return []
        return shares

    def _swap_due(self, free: int) -> bool:
        """Whether ``_swap_out_for_interactive`` would swap a batch request out now: some
        running, and the waiting interactive ones over the batch cap or the free KV blocks."""
        running = self.running
        if self._interactive_running == len(running):
            return False
        waiting = self.waiting[RequestClass.INTERACTIVE]
        if len(running) + len(waiting) > self.batch_cap:
            return True
        bs = self._bs
        budget = self._token_budget
        blocks = 0
        for w in waiting:
            blocks += _blocks(min(w.num_tokens - w.computed, budget), bs)
        return free < blocks

    def _start_exact(self, now: float, horizon_s: float, fast_forward: bool) -> float | None:
        """``start_iteration`` request by request, in running order (the reference scheduler)."""
        if self._steady_n:
            self._dissolve()
        self.active = []  # the per-request pass sees every running request; rebuilt at its end
        self._exact = True
        self._rebuild = fast_forward and self.aggregate
        spec = self.spec
        bs = self._bs
        free = self._kv_blocks - self.used_blocks
        swap_tokens = 0
        changed = False
        running = self.running
        if self.pool == Pool.MIXED and self.waiting[RequestClass.INTERACTIVE]:
            swap_tokens, free = self._swap_out_for_interactive(free)
            changed = swap_tokens > 0

        # One pass schedules the running requests and records the batch's composition (in running
        # order: preemption victims are popped from the end, never among those already recorded).
        # `prompt_tokens + generated` is `Request.num_tokens`, inlined: this is the hot path. The
        # admission loop classifies the same way (decode: one token left and scheduled).
        budget = self._token_budget
        prefill_new: list[int] = []
        prefill_ctx: list[int] = []
        n_dec = 0
        ctx_sum = 0
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
                free += self._drop(victim, free)
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
                    n_dec += 1
                    ctx_sum += c + 1
                    if r.generated == 0:
                        all_decode = False
                else:
                    prefill_new.append(n)
                    prefill_ctx.append(c)
                    all_decode = False

        free, n_dec, ctx_sum, admitted_swap, admitted, blocked = self._admit(
            now, free, budget, prefill_new, prefill_ctx, n_dec, ctx_sum
        )
        swap_tokens += admitted_swap
        changed = changed or admitted
        self.used_blocks = self._kv_blocks - free
        self._interactive_running = sum(r.klass == RequestClass.INTERACTIVE for r in running)
        self._stretch = 0
        if not running:
            # Nothing fits: cannot happen for requests that fit an empty cache, which the
            # cluster guarantees by rejecting the others on arrival.
            self._exact = False
            return None
        self.busy = True
        self._iter_start_s = now
        self._iter_decodes = n_dec

        decode_only = all_decode and not changed and not blocked
        if decode_only and self.pool == Pool.MIXED and self.waiting[RequestClass.INTERACTIVE]:
            # A waiting interactive request may evict batch ones as free KV shrinks during the
            # stretch; that decision is only taken iteration by iteration.
            decode_only = self._interactive_running == len(running)  # no batch request runs
        dt = self._perf.iteration_time_s(BatchComposition(prefill_new, prefill_ctx, n_dec, ctx_sum))
        if swap_tokens:
            dt += swap_tokens * spec.kv_bytes_per_token / spec.pcie_bytes_per_s
        if not (fast_forward and decode_only):
            return now + dt
        n = len(running)
        computed = np.fromiter((r.computed for r in running), dtype=np.int64, count=n)

        shared = self._shared()

        def blocks_after(k: int) -> int:
            return int(np.sum(-(-(computed + k) // bs))) - shared

        k_max = min(r.output_tokens - r.generated for r in running)
        # ceil((c + k) / bs) <= (c + k) / bs + 1: when even that bound fits, skip the exact sum
        bound = (int(computed.sum()) + n * k_max) / bs + n - shared
        return self._plan_stretch(now, dt, n, float(ctx_sum), k_max, blocks_after, bound, horizon_s)

    def _admit(
        self,
        now: float,
        free: int,
        budget: int,
        prefill_new: list[int],
        prefill_ctx: list[int],
        n_dec: int,
        ctx_sum: int,
    ) -> tuple[int, int, int, int, bool, bool]:
        """Admit waiting requests, interactive before batch and FCFS within a class (swapped batch
        requests before fresh ones), while the batch cap, the token budget and free KV blocks
        allow; the first one that does not fit stops admission (head-of-line, as vLLM V1 does).

        Returns free blocks, decodes, their summed context, tokens swapped in, whether any was
        admitted and whether one left waiting might be admitted at the next iteration (the
        token budget ran out, or a prefix-cache hit may shrink).
        """
        bs = self._bs
        running = self.running
        swap_tokens = 0
        admitted = False
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
            units = 0
            cost = 0
            cache = self.cache
            if cache is not None and c == 0 and queue is not self.swapped:
                units, cost = cache.lookup(r, self._kv_blocks - free)
                c = units * cache.unit_tokens
            left = r.prompt_tokens + r.generated - c
            n = min(left, budget)
            blocks = _blocks(c + n, bs)
            need = blocks - r.blocks if cache is None else blocks - units * cache.unit_blocks + cost
            if need > free:
                # head-of-line: vLLM V1 stops admitting at the first request that won't fit.
                # With a cache hit it may fit later even as free blocks shrink (an evicted unit
                # shortens the hit, and a budget-capped chunk then needs fewer new blocks), so
                # no decode stretch may skip the iterations that look it up again.
                blocked_by_budget = blocked_by_budget or units > 0
                break
            queue.popleft()
            if queue is self.swapped:
                swap_tokens += c
            elif cache is not None and r.computed == 0:
                cache.acquire(r, units, self._kv_blocks - free)
                r.computed = c
            free -= need
            r.blocks = blocks
            r.scheduled = n
            budget -= n
            if math.isnan(r.admitted_s):
                r.admitted_s = now
            r.order = self._admitted
            self._admitted += 1
            running.append(r)
            self.active.append(r)
            if r.klass == RequestClass.INTERACTIVE:
                self._interactive_running += 1
            admitted = True
            if n == 1 and left == 1:
                n_dec += 1
                ctx_sum += c + 1
            elif n > 0:
                prefill_new.append(n)
                prefill_ctx.append(c)
        return free, n_dec, ctx_sum, swap_tokens, admitted, blocked_by_budget

    def _plan_stretch(
        self,
        now: float,
        dt0: float,
        n: int,
        s0: float,
        k_max: int,
        blocks_after: Callable[[int], int],
        blocks_bound: float,
        horizon_s: float,
    ) -> float:
        """Extend a decode-only iteration of ``n`` sequences with summed context ``s0`` into a
        closed-form stretch of ``K`` iterations.

        Iteration ``k`` of the stretch costs ``base + slope * (S0 + n * k)``, so ``K`` iterations
        take ``T(K) = K * base + slope * (K * S0 + n * K * (K - 1) / 2)``. ``K`` stops at the first
        completion (``k_max`` iterations away), before the iteration whose KV blocks would not fit
        (``blocks_after(K)`` blocks are held after ``K`` iterations; ``blocks_bound`` is an upper
        bound of ``blocks_after(k_max)``), at the end of the perf model's affine piece, and at the
        last iteration that ends no later than ``horizon_s``.
        """
        if k_max <= 1 or now + dt0 > horizon_s:
            return now + dt0
        cap = self._kv_blocks
        if blocks_bound > cap and blocks_after(k_max) > cap:
            lo, hi = 1, k_max  # blocks_after(lo) fits (iteration 0 was allocated), hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if blocks_after(mid) <= cap:
                    lo = mid
                else:
                    hi = mid
            k_max = lo
        base, slope, valid_until = self._perf.decode_cost(n, s0)
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
        if not self._exact:  # every running request is steady
            self.used_blocks = self._steady_blocks_after(k)
            return
        bs = self._bs
        used = 0
        for r in self.running:
            r.blocks = -(-(r.computed + k) // bs)
            used += r.blocks
        self.used_blocks = used - self._shared()

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
        """Apply the iteration (or stretch) that ends at ``now``; return finished requests, in
        running order."""
        self.busy = False
        if self._exact:
            return self._end_exact(now)
        done_s = now + self._frontend_s
        k = self._stretch
        n = self._steady_n
        if k:  # a stretch: k iterations of every running request (all steady) decoding
            self.decode_tokens += k * n
            self.decode_token_time_s += n * (now - self._iter_start_s)
            self._stretch = 0
            self._ff = None
        else:
            k = 1
            if self._iter_decodes:
                self.decode_tokens += self._iter_decodes
                self.decode_token_time_s += self._iter_decodes * (now - self._iter_start_s)
        finished: list[Request] = []
        freed = 0
        if n:
            if k == 1:
                self._steady_blocks += self._phase[-self.tick % self._bs]
            else:  # a stretch holds exactly the steady requests' blocks after k (none else runs)
                self._steady_blocks = self.used_blocks + self._shared()
            self.tick += k
            self._steady_computed += n * k
            self.tokens_generated += n * k
            done_at = self._done_at
            tick = self.tick
            while done_at and done_at[0][0] <= tick:
                r = heapq.heappop(done_at)[2]
                self._leave(r)
                r.finish_s = done_s
                freed += self._release(r, freed)
                finished.append(r)
        active = self.active
        if active:
            still: list[Request] = []
            for r in active:
                step = self._apply(r, done_s)
                if step == _FINISHED:
                    freed += self._release(r, freed)
                    finished.append(r)
                elif step == _SAMPLED or _decodes_next(r):
                    # sampled, or a recomputation (after a preemption or a swap) whose chunk
                    # left exactly its last token: it decodes from now on, as the per-request
                    # scheduler (and ``_end_exact``'s rebuild) treats it
                    self._join(r)
                else:
                    still.append(r)  # a prompt chunk (or nothing): the prompt is not done yet
            self.active = still
        if finished:
            running = self.running
            for r in finished:
                running.remove(r)
                if r.klass == RequestClass.INTERACTIVE:
                    self._interactive_running -= 1
            if len(finished) > 1:
                finished.sort(key=_running_order)
            self.used_blocks -= freed
        return finished

    def _end_exact(self, now: float) -> list[Request]:
        """``end_iteration`` request by request (after ``_start_exact``)."""
        self._exact = False
        finished: list[Request] = []
        freed = 0
        done_s = now + self._frontend_s
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
                    freed += self._release(r, freed)
                    finished.append(r)
            self.tokens_generated += k * len(running)
        else:
            for r in running:
                if self._apply(r, done_s) == _FINISHED:
                    freed += self._release(r, freed)
                    finished.append(r)
        if finished:
            running = self.running = [r for r in running if r.generated < r.output_tokens]
            self.used_blocks -= freed
            for r in finished:
                if r.klass == RequestClass.INTERACTIVE:
                    self._interactive_running -= 1
        self.active = []
        if self._rebuild:
            for r in running:
                if _decodes_next(r):
                    self._join(r)
                else:
                    self.active.append(r)
        return finished

    def _apply(self, r: Request, done_s: float) -> int:
        """Apply a running request's scheduled tokens at the end of a plain iteration: its cache
        catches up with them, and when it has caught up with all its tokens one is sampled (at
        ``done_s``). Returns ``_CHUNK`` (no token yet), ``_SAMPLED`` or ``_FINISHED`` (the last
        token: ``finish_s`` is set)."""
        s = r.scheduled
        if not s:
            return _CHUNK
        r.scheduled = 0
        c = r.computed + s
        r.computed = c
        if self.cache is not None and r.hashes:
            self.cache.register(r)
        if c != r.prompt_tokens + r.generated:
            return _CHUNK
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
            return _FINISHED
        return _SAMPLED

    # ---- the steady requests' aggregates -------------------------------------------------------

    def _join(self, r: Request) -> None:
        """Make a running request steady (between iterations; its fields are current)."""
        tick = self.tick
        c = r.computed
        r.mark = tick
        self._steady_n += 1
        self._steady_computed += c
        self._steady_blocks += r.blocks
        self._phase[(c - tick) % self._bs] += 1
        heapq.heappush(self._done_at, (tick + r.output_tokens - r.generated, r.order, r))

    def _sync(self, r: Request) -> int:
        """Bring a steady request's ``computed`` and ``generated`` up to ``tick``; return the
        former."""
        d = self.tick - r.mark
        if d:
            r.computed += d
            r.generated += d
            r.mark = self.tick
        return r.computed

    def _leave(self, r: Request) -> None:
        """Take a request out of the steady aggregates (between iterations); its ``computed``,
        ``generated`` and ``blocks`` are written out. The caller removes it from the heap."""
        bs = self._bs
        c = self._sync(r)
        r.blocks = -(-c // bs)
        r.mark = -1
        r.scheduled = 0
        self._steady_n -= 1
        self._steady_computed -= c
        self._steady_blocks -= r.blocks
        self._phase[(c - self.tick) % bs] -= 1

    def _dissolve(self) -> None:
        """Write every steady request out before a per-request iteration."""
        for r in self.running:
            if r.mark >= 0:
                self._leave(r)
        self._done_at = []
        self.active = []

    def _steady_blocks_after(self, k: int) -> int:
        """KV blocks in use after ``k`` more iterations of the steady requests alone: request
        ``i`` gains one at every iteration that starts with its context a multiple of the block
        size (blocks shared through the prefix cache count once)."""
        bs = self._bs
        tick = self.tick
        total = self._steady_blocks - self._shared()
        for q, count in enumerate(self._phase):
            if count:
                first = (-q - tick) % bs  # iterations until its context is a multiple of bs
                if k > first:
                    total += count * (1 + (k - 1 - first) // bs)
        return total

    # ---- helpers -----------------------------------------------------------------------------

    def _shared(self) -> int:
        """Blocks counted more than once in the requests' ``blocks`` (shared cached units)."""
        cache = self.cache
        return 0 if cache is None else cache.excess

    def _release(self, r: Request, freed: int) -> int:
        """Blocks a finished request gives back (``freed`` already given back by others this
        iteration); its ``blocks`` drop to 0. Its cached units stay (see ``PrefixCache``)."""
        n = r.blocks
        if self.cache is not None:
            n = self.cache.release(r, self.used_blocks - freed)
        r.blocks = 0
        return n

    def _drop(self, r: Request, free: int) -> int:
        """Blocks a preempted or swapped-out request gives back at ``free`` free blocks."""
        if self.cache is None:
            return r.blocks
        return self.cache.release(r, self._kv_blocks - free)

    def prefix_hits(self) -> tuple[int, int]:
        """``(prompt tokens looked up, of which cached)`` since the start (0, 0 without a
        prefix cache)."""
        cache = self.cache
        return (0, 0) if cache is None else (cache.query_tokens, cache.hit_tokens)

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
        bs = self._bs
        budget = self._token_budget
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
                free += self._drop(victim, free)
                moved += victim.computed
                victim.blocks = 0
                victim.scheduled = 0
                victim.swaps += 1
                self.swap_outs += 1
                self.swapped.append(victim)
                self.new_swaps.append(victim)
        return moved, free


def _running_order(r: Request) -> int:
    return r.order


def _decodes_next(r: Request) -> bool:
    """Past its first token with one token left to compute: a steady decoder from now on (the
    fast and the per-request paths must agree on this, bit for bit)."""
    return r.generated > 0 and r.prompt_tokens + r.generated - r.computed == 1
