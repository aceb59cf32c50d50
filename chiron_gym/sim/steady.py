"""The steady decoders of an instance, kept as aggregates (``Instance`` holds one).

A steady decoder is a running request past its first token that decodes one token per iteration
(usually nearly all of them). They advance together, so an instance keeps their aggregates over a
token clock ``tick`` instead of touching each at every iteration: their count, summed context, KV
blocks, a histogram of their context modulo the block size (which of them need a new block at a
given tick) and a heap of the ticks at which they finish. A steady request's ``computed`` and
``generated`` are as of tick ``mark`` and are ``tick - mark`` larger now (``sync`` writes them
out); ``mark`` is -1 for a request that is not steady.
"""

from __future__ import annotations

import heapq

from mypy_extensions import mypyc_attr

from chiron_gym.sim.request import Request


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class SteadyDecoders:
    """The aggregates of an instance's steady decoders (see the module docstring). They change
    between iterations only, by ``join``, ``leave``, ``advance`` and ``pop_done``."""

    def __init__(self, block_size: int) -> None:
        self.bs = block_size
        self.tick = 0
        self.n = 0
        self.computed = 0  # their summed ``computed`` at ``tick``
        self.blocks = 0  # their KV blocks between iterations: sum of ceil(computed / bs)
        self.phase = [0] * block_size  # how many have (computed - tick) % bs == q
        self.done_at: list[tuple[int, int, Request]] = []  # heap: (last tick, order, request)

    def join(self, r: Request) -> None:
        """Make a running request steady (between iterations; its fields are current)."""
        tick = self.tick
        c = r.computed
        r.mark = tick
        self.n += 1
        self.computed += c
        self.blocks += r.blocks
        self.phase[(c - tick) % self.bs] += 1
        heapq.heappush(self.done_at, (tick + r.output_tokens - r.generated, r.order, r))

    def sync(self, r: Request) -> int:
        """Bring a steady request's ``computed`` and ``generated`` up to ``tick``; return the
        former."""
        d = self.tick - r.mark
        if d:
            r.computed += d
            r.generated += d
            r.mark = self.tick
        return r.computed

    def leave(self, r: Request) -> None:
        """Take a request out of the aggregates (between iterations); its ``computed``,
        ``generated`` and ``blocks`` are written out. The caller removes it from the heap."""
        bs = self.bs
        c = self.sync(r)
        r.blocks = -(-c // bs)
        r.mark = -1
        r.scheduled = 0
        self.n -= 1
        self.computed -= c
        self.blocks -= r.blocks
        self.phase[(c - self.tick) % bs] -= 1

    def dissolve(self, running: list[Request]) -> None:
        """Write every steady request of ``running`` out (before a per-request iteration)."""
        for r in running:
            if r.mark >= 0:
                self.leave(r)
        self.done_at = []

    def at_boundary(self) -> int:
        """How many need a new KV block for their next token (their context is a multiple of the
        block size)."""
        return self.phase[-self.tick % self.bs]

    def until_first_done(self) -> int:
        """Iterations to the first completion (some are steady)."""
        return self.done_at[0][0] - self.tick

    def blocks_after(self, k: int, shared: int) -> int:
        """KV blocks in use after ``k`` more iterations of the steady requests alone: request
        ``i`` gains one at every iteration that starts with its context a multiple of the block
        size (``shared`` blocks, counted more than once in their ``blocks``, count once)."""
        bs = self.bs
        tick = self.tick
        total = self.blocks - shared
        for q, count in enumerate(self.phase):
            if count:
                first = (-q - tick) % bs  # iterations until its context is a multiple of bs
                if k > first:
                    total += count * (1 + (k - 1 - first) // bs)
        return total

    def advance(self, k: int, stretch_blocks: int) -> None:
        """``k`` iterations ended in which every steady request decoded a token: after one their
        blocks grow by those that were at a block boundary; after a stretch (``k > 1``, nothing
        else ran) they are ``stretch_blocks``, the blocks the stretch held."""
        if k == 1:
            self.blocks += self.phase[-self.tick % self.bs]
        else:
            self.blocks = stretch_blocks
        self.tick += k
        self.computed += self.n * k

    def pop_done(self) -> Request | None:
        """The next steady request whose last token is in by ``tick``, taken out of the
        aggregates (in the order of their last tick, then admission); ``None`` when none is."""
        done_at = self.done_at
        if done_at and done_at[0][0] <= self.tick:
            r = heapq.heappop(done_at)[2]
            self.leave(r)
            return r
        return None
