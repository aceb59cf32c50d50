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
(``_plan_stretch``; the arithmetic is in ``sim/stretch.py``). ``fast_forward=False`` runs the
same model one iteration per event; the two give the same timestamps
(``tests/sim/test_fast_forward.py``).

What an instance holds, and the admission, preemption and swap moves, are ``InstanceBase``'s
(``sim/instance_base.py``); the steady decoders' aggregates are a ``SteadyDecoders``
(``sim/steady.py``); the instance type is an ``InstanceSpec`` (``sim/specs.py``).

Why one module of over 450 lines: the fast path and the per-request reference scheduler are one
class whose two halves mirror each other step by step (the tests compare them bit for bit); split
apart, each would reach into the other's fields. What does not depend on the scheduling is
already in the modules named above.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.instance_base import FINISHED, HANDOFF, SAMPLED, InstanceBase
from chiron_gym.sim.perf_model import BatchComposition
from chiron_gym.sim.request import Pool, Request, RequestClass
from chiron_gym.sim.stretch import (
    iterations_begun,
    last_fitting,
    stretch_elapsed,
    stretch_length,
)


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Instance(InstanceBase):
    """A serving instance: its requests and KV blocks (``InstanceBase``) and the iteration
    scheduler.

    Steady decoders (running requests past their first token that decode one token per
    iteration, usually nearly all of them) are kept as aggregates (``steady``, a
    ``SteadyDecoders``) over a per-instance token clock; the others are ``active``. An iteration
    in which every request gets its whole share of the token budget and of the free KV blocks
    therefore costs O(requests that are not steady); any other (a preemption, a starved request, a
    swap on a mixed instance) dissolves the aggregates and runs the per-request scheduler, which
    is also what the per-iteration reference mode runs throughout (``aggregate=False`` forces it
    in fast-forward mode too: the tests compare the two bit for bit).
    """

    def sync_steady(self) -> None:
        """Write the steady requests' ``computed``, ``generated`` and ``blocks`` out (they are
        kept as aggregates); for tests and inspection, the simulation does not need it."""
        bs = self._bs
        ahead = (self._stretch or 1) if self.busy and not self._exact else 0
        for r in self.running:
            if r.mark >= 0:
                c = self.steady.sync(r)
                r.blocks = -(-(c + ahead) // bs)

    # ---- one iteration -------------------------------------------------------------------------

    def start_iteration(self, now: float, horizon_s: float, fast_forward: bool) -> float | None:
        """Schedule an iteration at ``now``; return its end time (the stretch's, if fast-forwarded).

        Returns ``None`` when nothing can run (the instance idles until it is handed work).
        ``horizon_s`` is the time of the next external event (arrival or control): a stretch never
        ends after it, so whatever happens then sees the same state as in per-iteration mode.
        """
        if not (fast_forward and self.aggregate):
            return self._start_exact(now, horizon_s, fast_forward)
        bs = self._bs
        steady = self.steady
        free = self._kv_blocks - self.used_blocks - self.reserved
        interactive_waits = self.pool == Pool.MIXED and bool(self.waiting[RequestClass.INTERACTIVE])
        if interactive_waits and self._swap_due(free):
            return self._start_exact(now, horizon_s, fast_forward)
        budget = self._token_budget
        n_dec = steady.n
        tokens = n_dec  # one each for the steady requests, then the others' whole shares
        active = self.active
        for r in active:
            tokens += r.prompt_tokens + r.generated - r.computed
        shares = None if tokens <= budget else self._shares(budget)
        if shares is not None:
            if not shares:
                return self._start_exact(now, horizon_s, fast_forward)  # a steady one starves
            tokens = n_dec + sum(shares)
        need = steady.at_boundary() if n_dec else 0  # steady ones at a block boundary
        for j, r in enumerate(active):
            n = r.prompt_tokens + r.generated - r.computed if shares is None else shares[j]
            if n > 0:
                need += -(-(r.computed + n) // bs) - r.blocks
        if need > free:
            # someone would be preempted: who depends on the running order
            return self._start_exact(now, horizon_s, fast_forward)
        free -= need
        ctx_sum = steady.computed + n_dec
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
        loads = False
        if self.remote:
            free, loads = self._load_remote(free)
        free, n_dec, ctx_sum, swap_tokens, changed, blocked = self._admit(
            now,
            free,
            self._token_budget - tokens,
            prefill_new,
            prefill_ctx,
            n_dec,
            ctx_sum,
        )
        self.used_blocks = self._kv_blocks - free - self.reserved
        self._stretch = 0
        self._exact = False
        if not self.running:
            return None
        decode_only = all_decode and not changed and not blocked and not had_active and not loads
        batch = BatchComposition(prefill_new, prefill_ctx, n_dec, ctx_sum)
        dt, decode_only = self._begin(now, batch, swap_tokens, decode_only)
        if decode_only:
            k_first = steady.until_first_done()  # iterations to the first completion
            return self._plan_stretch(
                now,
                dt,
                n_dec,
                float(ctx_sum),
                k_first,
                self._steady_blocks_after,
                # at most a block per bs each
                steady.blocks - self._shared() + n_dec * -(-k_first // bs),
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
        if budget < self.steady.n - steady_seen:
            return []
        return shares

    def _start_exact(self, now: float, horizon_s: float, fast_forward: bool) -> float | None:
        """``start_iteration`` request by request, in running order (the reference scheduler)."""
        if self.steady.n:
            self.steady.dissolve(self.running)
        self.active = []  # the per-request pass sees every running request; rebuilt at its end
        self._exact = True
        self._rebuild = fast_forward and self.aggregate
        bs = self._bs
        free = self._kv_blocks - self.used_blocks - self.reserved
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

        if self.remote:
            free, loads = self._load_remote(free)
            changed = changed or loads
        free, n_dec, ctx_sum, admitted_swap, admitted, blocked = self._admit(
            now, free, budget, prefill_new, prefill_ctx, n_dec, ctx_sum
        )
        swap_tokens += admitted_swap
        changed = changed or admitted
        self.used_blocks = self._kv_blocks - free - self.reserved
        self._interactive_running = sum(r.klass == RequestClass.INTERACTIVE for r in running)
        self._stretch = 0
        if not running:
            # Nothing fits: cannot happen for requests that fit an empty cache, which the
            # cluster guarantees by rejecting the others on arrival.
            self._exact = False
            return None
        decode_only = all_decode and not changed and not blocked
        batch = BatchComposition(prefill_new, prefill_ctx, n_dec, ctx_sum)
        dt, decode_only = self._begin(now, batch, swap_tokens, decode_only)
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

    def _begin(
        self, now: float, batch: BatchComposition, swap_tokens: int, decode_only: bool
    ) -> tuple[float, bool]:
        """Start the iteration of ``batch`` scheduled at ``now`` (``swap_tokens`` moved over
        PCIe). Returns its duration, and whether it may start a decode-only stretch:
        ``decode_only`` (nothing admitted, swapped or preempted, every request decoding past its
        first token) unless an interactive request waits on a mixed instance that runs batch
        ones. Both schedulers start their iterations here, so that they agree bit for bit."""
        self.busy = True
        self._iter_start_s = now
        self._iter_decodes = batch.num_decode
        if self.hands_off:  # a prefill instance hands a request off at its next token
            decode_only = False
        if decode_only and self.pool == Pool.MIXED and self.waiting[RequestClass.INTERACTIVE]:
            # A waiting interactive request may evict batch ones as free KV shrinks during the
            # stretch; that decision is only taken iteration by iteration.
            decode_only = self._interactive_running == len(self.running)  # no batch request runs
        dt = self._perf.iteration_time_s(batch)
        if swap_tokens:
            spec = self.spec
            dt += swap_tokens * spec.kv_bytes_per_token / spec.pcie_bytes_per_s
        return dt, decode_only

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
        take ``T(K) = K * base + slope * (K * S0 + n * K * (K - 1) / 2)`` (``sim/stretch.py``).
        ``K`` stops at the first completion (``k_max`` iterations away), before the iteration
        whose KV blocks would not fit (``blocks_after(K)`` blocks are held after ``K`` iterations;
        ``blocks_bound`` is an upper bound of ``blocks_after(k_max)``), at the end of the perf
        model's affine piece, and at the last iteration that ends no later than ``horizon_s``.
        """
        if k_max <= 1 or now + dt0 > horizon_s:
            return now + dt0
        cap = self._kv_blocks - self.reserved
        if blocks_bound > cap and blocks_after(k_max) > cap:
            k_max = last_fitting(k_max, blocks_after, cap)
        base, slope, valid_until = self._perf.decode_cost(n, s0)
        k = stretch_length(now, k_max, base, slope, s0, n, valid_until, horizon_s)
        if k <= 1:
            return now + dt0
        self._ff = (now, base, slope, s0, n)
        self._hold_stretch(k)
        return now + stretch_elapsed(k, base, slope, s0, n)

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

    def _steady_blocks_after(self, k: int) -> int:
        """KV blocks in use after ``k`` more iterations of the steady requests alone (blocks
        shared through the prefix cache count once)."""
        return self.steady.blocks_after(k, self._shared())

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
        k = iterations_begun(now, t0, base, slope, s0, n, k_max)
        if k >= k_max:
            return None
        self._hold_stretch(k)
        return t0 + stretch_elapsed(k, base, slope, s0, n)

    def end_iteration(self, now: float) -> list[Request]:
        """Apply the iteration (or stretch) that ends at ``now``; return finished requests, in
        running order (on a prefill instance: those whose prompt is done, handed off)."""
        self.busy = False
        if self._exact:
            return self._end_exact(now)
        done_s = now + self._frontend_s
        k = self._stretch
        steady = self.steady
        n = steady.n
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
            # a stretch holds exactly the steady requests' blocks after k (none else runs)
            steady.advance(k, self.used_blocks + self._shared() if k > 1 else 0)
            self.tokens_generated += n * k
            r_done = steady.pop_done()
            while r_done is not None:
                r_done.finish_s = done_s
                freed += self._release(r_done, freed)
                finished.append(r_done)
                r_done = steady.pop_done()
        active = self.active
        if active:
            still: list[Request] = []
            for r in active:
                step = self._apply(r, done_s)
                if step == FINISHED:
                    freed += self._release(r, freed)
                    finished.append(r)
                elif step == HANDOFF:  # its blocks stay until a decode instance has read them
                    finished.append(r)
                elif step == SAMPLED or (_decodes_next(r) and not self.hands_off):
                    # sampled, or a recomputation (after a preemption or a swap) whose chunk
                    # left exactly its last token: it decodes from now on, as the per-request
                    # scheduler (and ``_end_exact``'s rebuild) treats it
                    steady.join(r)
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
            if self.hands_off:
                self.outgoing.extend(finished)
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
                step = self._apply(r, done_s)
                if step == FINISHED:
                    freed += self._release(r, freed)
                    finished.append(r)
                elif step == HANDOFF:
                    finished.append(r)
        if finished:
            if self.hands_off:  # handed off (every known token computed): blocks kept until read
                running = self.running = [
                    r for r in running if r.computed < r.prompt_tokens + r.generated
                ]
                self.outgoing.extend(finished)
            else:
                running = self.running = [r for r in running if r.generated < r.output_tokens]
            self.used_blocks -= freed
            for r in finished:
                if r.klass == RequestClass.INTERACTIVE:
                    self._interactive_running -= 1
        self.active = []
        if self._rebuild:
            for r in running:
                if _decodes_next(r) and not self.hands_off:
                    self.steady.join(r)
                else:
                    self.active.append(r)
        return finished


def _running_order(r: Request) -> int:
    return r.order


def _decodes_next(r: Request) -> bool:
    """Past its first token with one token left to compute: a steady decoder from now on (the
    fast and the per-request paths must agree on this, bit for bit)."""
    return r.generated > 0 and r.prompt_tokens + r.generated - r.computed == 1
