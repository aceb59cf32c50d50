"""Automatic prefix caching of one instance's KV cache, as vLLM's block pool does it.

A prompt's KV blocks are keyed by the hash of their content and everything before it (a chain:
equal hashes are equal prefixes). The source of the hashes is the workload
(``Workload.prefix_blocks``): Mooncake's ``hash_ids``, or a scenario's generator
(``workload/prefix.py``); one hash covers ``unit_tokens`` tokens, ``unit_blocks`` KV blocks
(Mooncake: 512 tokens, 32 blocks of 16). Only whole units are cached.

The model follows vLLM V1 (``vllm/v1/core/block_pool.py``, ``kv_cache_manager.py``):

- **Lookup** at admission: the longest run of the prompt's leading units that are cached, at most
  ``prompt - 1`` tokens (the last prompt token is always computed, for its logits). The request
  starts with those tokens computed; the iteration-time model sees them as cached context of its
  first prefill chunk, so the hit skips exactly their prefill compute.
- **Sharing**: a hit unit is referenced, not copied. If no running request holds it, it is taken
  out of the free queue (it costs free blocks, as ``can_allocate`` counts evictable hits).
- **Registration**: when a prompt chunk completes a unit, the unit is cached under its hash
  (unless that hash is cached already: the copy then stays private, as a duplicate).
- **Free queue**: released blocks go to the tail of one queue, a request's in reverse order (its
  private tail first, its first unit last, so prefixes are evicted last); cached blocks stay
  in the queue with their hash, so they still count as free. Every allocation takes blocks from
  the head, evicting the hash of a cached unit it takes (a unit is evicted whole at its first
  block). The instance only counts its used blocks; ``settle`` takes from the head whatever was
  allocated since (allocations between two settles never interleave with releases, so taking
  them at once is exact, also across a fast-forwarded stretch).

``used`` blocks (the instance's ``used_blocks``) are the blocks some running request references;
a request's ``blocks`` counts its whole table, shared units included, so the sum over requests
exceeds ``used`` by ``excess`` (a unit referenced ``k`` times counts ``k - 1`` extra times).
"""

from __future__ import annotations

from collections import OrderedDict

from mypy_extensions import mypyc_attr

from chiron_gym.sim.request import NO_UNITS, Request


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class PrefixCache:
    """The hash-keyed KV blocks and the free-block queue of one instance."""

    def __init__(self, capacity_blocks: int, unit_tokens: int, unit_blocks: int) -> None:
        self.capacity = capacity_blocks
        self.unit_tokens = unit_tokens
        self.unit_blocks = unit_blocks
        self.refs: dict[int, int] = {}  # cached units some running request references
        # The free queue, head first: a cached unit (key: its hash, >= 0) or a run of uncached
        # blocks (key < 0), each with its number of blocks.
        self.free: OrderedDict[int, int] = OrderedDict()
        self.free[-1] = capacity_blocks
        self._run_key = -2
        self.free_blocks = capacity_blocks
        self.excess = 0
        self.query_tokens = 0  # prompt tokens looked up at admission (vLLM's ``queries``)
        self.hit_tokens = 0  # ... of which were cached (``hits``)
        self.evicted_units = 0

    def settle(self, used: int) -> None:
        """Take from the head of the free queue the blocks allocated since the last call, so that
        the queue holds ``capacity - used`` blocks; cached units taken lose their hash."""
        take = self.free_blocks - (self.capacity - used)
        free = self.free
        while take > 0:
            key, n = free.popitem(last=False)
            if key >= 0:
                self.evicted_units += 1
            got = n if n < take else take
            take -= got
            self.free_blocks -= got
            if n > got:  # the rest of a run (or of an evicted unit) stays at the head, uncached
                k = self._run_key
                self._run_key = k - 1
                free[k] = n - got
                free.move_to_end(k, last=False)

    def lookup(self, r: Request, used: int) -> tuple[int, int]:
        """``(units, free blocks they cost)`` of ``r``'s longest cached prefix, at ``used``
        blocks in use. Nothing changes: the units the blocks allocated since the last settle
        take from the queue's head are skipped, not evicted (so the queue changes only at
        admissions and releases, the same moments in fast-forward and per-iteration mode)."""
        hashes = r.hashes
        if not hashes:
            return 0, 0
        limit = min(len(hashes), (r.prompt_tokens - 1) // self.unit_tokens)
        refs = self.refs
        free = self.free
        take = self.free_blocks - (self.capacity - used)
        gone: set[int] = set()
        if take > 0:
            for key, n in free.items():
                if key >= 0:
                    gone.add(key)
                take -= n
                if take <= 0:
                    break
        units = cost = 0
        while units < limit:
            h = hashes[units]
            if h in refs:
                pass
            elif h in free and h not in gone:
                cost += self.unit_blocks
            else:
                break
            units += 1
        return units, cost

    def match_units(self, hashes: tuple[int, ...]) -> int:
        """Leading units of ``hashes`` held now, for routing (a unit that blocks allocated since
        the last admission or release will evict still counts: what a router could know)."""
        refs = self.refs
        free = self.free
        units = 0
        for h in hashes:
            if h not in refs and h not in free:
                break
            units += 1
        return units

    def acquire(self, r: Request, units: int, used: int) -> None:
        """Reference ``r``'s first ``units`` units (``lookup`` at ``used`` blocks in use found
        them); count the query."""
        self.settle(used)
        self.query_tokens += r.prompt_tokens
        self.hit_tokens += units * self.unit_tokens
        hashes = r.hashes
        refs = self.refs
        g = self.unit_blocks
        if not units:
            return
        cached: list[int] = []
        for h in hashes[:units]:
            count = refs.get(h, 0)
            if count:
                self.excess += g
            else:
                del self.free[h]
                self.free_blocks -= g
            refs[h] = count + 1
            cached.append(h)
        r.cached = cached
        r.hashed = units

    def register(self, r: Request) -> None:
        """Cache the units ``r``'s prompt chunks have completed (after a chunk is applied)."""
        hashes = r.hashes
        done = min(r.computed, r.prompt_tokens) // self.unit_tokens
        if done > len(hashes):
            done = len(hashes)
        refs = self.refs
        free = self.free
        for i in range(r.hashed, done):
            h = hashes[i]
            if h not in refs and h not in free:
                refs[h] = 1
                if r.cached:
                    r.cached.append(h)
                else:
                    r.cached = [h]  # never append to the shared empty list
        if done > r.hashed:
            r.hashed = done

    def release(self, r: Request, used: int) -> int:
        """Drop ``r``'s blocks (it finished, was preempted or swapped out) at ``used`` blocks in
        use; return how many are no longer used (its shared units still referenced stay)."""
        self.settle(used)
        cached = r.cached
        g = self.unit_blocks
        private = r.blocks - g * len(cached)
        free = self.free
        if private > 0:
            k = self._run_key
            self._run_key = k - 1
            free[k] = private
            self.free_blocks += private
        kept = 0
        refs = self.refs
        for h in reversed(cached):
            count = refs[h] - 1
            if count:
                refs[h] = count
                kept += g
                self.excess -= g
            else:
                del refs[h]
                free[h] = g
                self.free_blocks += g
        r.cached = NO_UNITS
        r.hashed = 0
        return r.blocks - kept

    def cached_units(self) -> int:
        """Units held under a hash: referenced or free but not yet evicted."""
        return len(self.refs) + sum(1 for k in self.free if k >= 0)
