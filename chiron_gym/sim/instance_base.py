"""What a serving instance holds, and the moves of requests between its queues and its KV cache.

``InstanceBase`` is an ``Instance`` (``sim/instance.py``) without its iteration scheduler: every
field of an instance (its running, waiting and swapped requests, the KV blocks they hold and the
prefix cache, its counters, the scheduler's state), the views the cluster routes by, and the moves
of one request that an iteration makes. At its start: admitting a waiting request (``_admit``),
recompute preemption (``_preempt``) and, on a mixed instance, swapping batch requests out to CPU
memory for waiting interactive ones (``_swap_out_for_interactive``, foreseen by ``_swap_due``);
at its end, applying a request's scheduled tokens (``_apply``).

Disaggregated pools: a prefill instance hands a request off when every known token is computed
(the prompt, and what a mixed instance generated before swapping it out: ``HANDOFF``; no token
is sampled here, and nothing decodes) and holds its KV blocks (``outgoing``) until a decode
instance has read them (``sent``). A decode instance takes handed-off requests (``hand_over``)
into ``remote``; at an iteration start it allocates their blocks, in order, while they fit
(``_load_remote``, the KV read then starts: ``loading``); once read (``loaded``) a request
waits as any other, holding its blocks, and its first iteration recomputes its last prompt
token and samples its first token (vLLM's ``NixlConnector``). Blocks held by requests that do not
run (``remote`` ones read in, loaded ones waiting) are ``reserved``, apart from ``used_blocks``.

Why one module of over 450 lines: every move here changes the same fields (the queues, the KV
blocks and the prefix cache's references) under one set of invariants, which the tests check
after each iteration; split by move, each part would reach into the others' fields.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

from mypy_extensions import mypyc_attr

from chiron_gym.sim.prefix_cache import PrefixCache
from chiron_gym.sim.request import Pool, Request, RequestClass
from chiron_gym.sim.specs import InstanceSpec, InstanceState
from chiron_gym.sim.steady import SteadyDecoders

# What the end of an iteration did to a request (``InstanceBase._apply``).
CHUNK: Final = 0
SAMPLED: Final = 1
FINISHED: Final = 2
HANDOFF: Final = 3  # a prefill instance's request whose prompt is done


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class InstanceBase:
    """A serving instance's state, its requests and KV blocks (``Instance`` adds the iteration
    scheduler).

    ``running`` is in admission order (``Request.order``); ``active`` is the running requests the
    scheduler tracks one by one (those not kept as steady aggregates), in the same order:
    admission appends to both.
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
        """``aggregate=False`` runs every iteration through the per-request scheduler (see
        ``Instance``); ``prefix_unit_tokens``: tokens per prompt hash of the workload (0: none);
        with the spec's ``prefix_caching`` it turns the prefix cache on."""
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
        self.active: list[Request] = []  # the running requests that are not steady, in order
        self.used_blocks = 0
        # Disaggregation: a prefill instance hands requests off; a decode instance reads them in.
        self.hands_off = pool == Pool.PREFILL
        self.reserved = 0  # blocks of requests not running: being read in, or read and waiting
        self.remote: deque[Request] = deque()  # handed over, blocks not yet allocated
        self.loading: list[Request] = []  # blocks allocated, KV being read
        self.new_loads: list[Request] = []  # reads started by the last start_iteration
        self.outgoing: list[Request] = []  # prefilled here, KV held until read
        self.ready: deque[Request] = deque()  # read in, holding their blocks: admitted first
        self.busy = False  # an iteration (or a fast-forwarded stretch) is in flight
        self.kicked = False  # a start-iteration event is pending
        self.epoch = 0  # counts scheduled iteration ends; an event of an older epoch is stale
        # For the local control loop (per instance): tokens decoded, and the seconds each waited
        # since its request's previous token, summed (vLLM's inter-token latency histogram's
        # count and sum); their ratio over a period is the ITL requests see here.
        self.decode_tokens = 0
        self.first_tokens = 0  # interactive first tokens, and their TTFT here (from routing)
        self.ttft_sum_s = 0.0
        self.decode_token_time_s = 0.0
        self.tokens_generated = 0
        self.preemptions = 0
        self.swap_outs = 0
        self.new_swaps: list[Request] = []  # swapped out by the last start_iteration
        self._admitted = 0  # admissions so far: the next ``Request.order``
        self._interactive_running = 0
        # The scheduler's (``Instance``): the iteration or stretch in flight, the steady decoders.
        self._iter_start_s = 0.0
        self._iter_decodes = 0  # decodes of the iteration in flight
        self._stretch = 0  # iterations of the stretch in flight (0: a plain iteration)
        # the stretch's closed form (start, base, slope, summed context, sequences) for cutting
        # it short when a request is routed here mid-stretch (``truncate_stretch``)
        self._ff: tuple[float, float, float, float, int] | None = None
        self.steady = SteadyDecoders(self._bs)  # the steady decoders' aggregates
        self._exact = False  # the iteration in flight runs the per-request scheduler
        self._rebuild = False  # ... and the aggregates are rebuilt when it ends
        self.cache: PrefixCache | None = None
        if spec.prefix_caching and prefix_unit_tokens and pool != Pool.DECODE:
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

    # ---- views ---------------------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        """Requests held but not running (vLLM's ``num_requests_waiting``, swapped and read-in
        ones included)."""
        return len(self.waiting[0]) + len(self.waiting[1]) + len(self.swapped) + len(self.ready)

    @property
    def load(self) -> int:
        """Requests held: running plus waiting (on a decode instance, those read in too)."""
        return len(self.running) + self.num_waiting + len(self.remote) + len(self.loading)

    @property
    def interactive_load(self) -> int:
        """Interactive requests held (a mixed instance evicts batch ones for these)."""
        return self._interactive_running + len(self.waiting[RequestClass.INTERACTIVE])

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's ``kv_cache_usage_perc``)."""
        return (self.used_blocks + self.reserved) / self._kv_blocks

    def room_for(self, klass: int) -> bool:
        """Whether a request of ``klass`` may be routed here now."""
        if self.state != InstanceState.READY:
            return False
        if klass == RequestClass.INTERACTIVE and self.pool == Pool.MIXED:
            return self.interactive_load < self.batch_cap
        return self.load < self.batch_cap

    def has_work(self) -> bool:
        """Whether anything is running or waiting (or, disaggregated, being sent or read)."""
        return bool(
            self.running
            or self.waiting[0]
            or self.waiting[1]
            or self.swapped
            or self.ready
            or self.remote
            or self.loading
            or self.outgoing
        )

    def prefix_hits(self) -> tuple[int, int]:
        """``(prompt tokens looked up, of which cached)`` since the start (0, 0 without a
        prefix cache)."""
        cache = self.cache
        return (0, 0) if cache is None else (cache.query_tokens, cache.hit_tokens)

    # ---- control -------------------------------------------------------------------------------

    def set_batch_cap(self, cap: int) -> None:
        """Change the most requests run at once (clipped to ``[1, spec.max_batch_cap]``)."""
        self.batch_cap = max(1, min(int(cap), self.spec.max_batch_cap))

    def enqueue(self, request: Request, now: float = math.nan) -> None:
        """Hand a routed request to this instance's waiting queue (at ``now``)."""
        request.routed_s = now
        self.waiting[request.klass].append(request)

    def fail(self, now: float) -> list[Request]:
        """The instance dies at ``now`` (a GPU fault): it stops, and its KV cache, the CPU copies
        of its swapped requests and the iteration in flight are lost. Returns every request it
        held, running (in admission order), then waiting interactive, waiting batch, swapped,
        then, disaggregated, those being read in and those prefilled here."""
        held = [
            *self.running,
            *self.waiting[0],
            *self.waiting[1],
            *self.swapped,
            *self.ready,
            *self.remote,
            *self.loading,
            *self.outgoing,
        ]
        self.remote = deque()
        self.ready = deque()
        self.loading = []
        self.new_loads = []
        self.outgoing = []
        self.reserved = 0
        self.running = []
        self.active = []
        self.waiting = (deque(), deque())
        self.swapped = deque()
        self.new_swaps = []
        self.steady = SteadyDecoders(self._bs)
        self.used_blocks = 0
        self._interactive_running = 0
        self.busy = False
        self._stretch = 0
        self._ff = None
        self._exact = False
        self._rebuild = False
        self.epoch += 1  # the iteration end in flight is stale
        self.state = InstanceState.STOPPED
        self.stopped_s = now
        return held

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

    def hand_over(self, request: Request, now: float) -> None:
        """A decode instance takes a prefilled request, whose KV it will read in."""
        request.routed_s = now
        self.remote.append(request)

    def loaded(self, request: Request) -> None:
        """Its KV has been read in: the request waits to run, holding its blocks, with its last
        prompt token to recompute (its first iteration samples its first token). It is admitted
        before any other waiting request: it needs no new block, so none can keep it out (a
        recomputation that cannot fit while read-in requests hold blocks would, for good)."""
        self.loading.remove(request)
        request.blocks = _blocks(request.num_tokens, self._bs)
        request.computed = request.num_tokens - 1
        request.scheduled = 0
        self.ready.append(request)

    def sent(self, request: Request) -> None:
        """A decode instance has read a request prefilled here (or failed reading it): its
        blocks are given back."""
        self.outgoing.remove(request)
        self.used_blocks -= self._release(request, 0)

    def drop_incoming(self, request: Request) -> None:
        """Forget a request handed over or being read in (its sender failed)."""
        if request in self.loading:
            self.loading.remove(request)
            self.reserved -= _blocks(request.num_tokens, self._bs)
        else:
            self.remote.remove(request)

    # ---- moves at the start of an iteration ----------------------------------------------------

    def _load_remote(self, free: int) -> tuple[int, bool]:
        """Allocate the blocks of handed-over requests, in order, while they fit in ``free``
        (after the running requests have theirs); their reads start. Returns the free blocks
        and whether a read started."""
        bs = self._bs
        remote = self.remote
        started = False
        while remote:
            r = remote[0]
            need = _blocks(r.prompt_tokens + r.generated, bs)
            if need > free:
                break
            remote.popleft()
            free -= need
            self.reserved += need  # ``r.blocks`` are its sender's until the read ends
            self.loading.append(r)
            self.new_loads.append(r)
            started = True
        return free, started

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
            if queue is self.ready:  # read in from a prefill instance: its blocks now run
                self.reserved -= r.blocks
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

    def _next_queue(self) -> deque[Request] | None:
        if self.ready:
            return self.ready
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

    # ---- the end of an iteration ---------------------------------------------------------------

    def _apply(self, r: Request, done_s: float) -> int:
        """Apply a running request's scheduled tokens at the end of a plain iteration: its cache
        catches up with them, and when it has caught up with all its tokens one is sampled (at
        ``done_s``). Returns ``CHUNK`` (no token yet), ``SAMPLED`` or ``FINISHED`` (the last
        token: ``finish_s`` is set)."""
        s = r.scheduled
        if not s:
            return CHUNK
        r.scheduled = 0
        c = r.computed + s
        r.computed = c
        if self.cache is not None and r.hashes:
            self.cache.register(r)
        if c != r.prompt_tokens + r.generated:
            return CHUNK
        if self.hands_off:  # the prompt is done: a decode instance samples the first token
            if r.klass == RequestClass.INTERACTIVE:
                self.first_tokens += 1
                self.ttft_sum_s += done_s - r.routed_s
            return HANDOFF
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
            return FINISHED
        return SAMPLED

    # ---- KV blocks -----------------------------------------------------------------------------

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
