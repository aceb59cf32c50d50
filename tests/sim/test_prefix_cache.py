"""Prefix caching: hand-computed hits, vLLM's eviction order, sharing, and the scenario keys."""

from __future__ import annotations

import math

import pytest

from chiron_gym.sim import LinearPerfModel, Pool, Workload
from chiron_gym.sim.prefix_cache import PrefixCache
from chiron_gym.sim.request import Request
from tests.conftest import make_cluster, small_spec

PERF = LinearPerfModel(
    overhead_s=0.010, per_token_s=0.001, per_seq_s=0.0, prefill_pair_s=1e-6, decode_context_s=0.0
)


def _sharing(second_at: float, outputs: tuple[int, int]) -> Workload:
    """A at 0 and B at ``second_at``, prompts of 100 tokens (7 units of 16: 6 whole, one of 4)
    whose first 3 units are the same."""
    return Workload.from_columns(
        arrival_s=[0.0, second_at],
        klass=[0, 0],
        prompt_tokens=[100, 100],
        output_tokens=list(outputs),
        prefix_blocks=((1, 2, 3, 40, 41, 42, 43), (1, 2, 3, 50, 51, 52, 53)),
        prefix_block_tokens=16,
    )


@pytest.mark.parametrize("fast_forward", [True, False])
def test_second_request_skips_exactly_the_cached_prefill(fast_forward: bool) -> None:
    """B arrives after A is done: 3 cached units (48 tokens) shorten B's TTFT by exactly their
    prefill time, 48 token-times plus the 48 * 49 / 2 attention pairs among them."""
    ttft = {}
    for caching in (False, True):
        workload = _sharing(second_at=1.0, outputs=(1, 1))
        spec = small_spec(perf_model=PERF, prefix_caching=caching)
        cluster = make_cluster(
            workload, {Pool.INTERACTIVE: (1, 8)}, spec, fast_forward=fast_forward
        )
        cluster.run_until(5.0)
        ttft[caching] = cluster.first_token_s[1] - 1.0
        if caching:
            assert cluster.instances[0].prefix_hits() == (200, 48)
            assert cluster.prefix_hit_rates() == {"interactive": 48 / 200}
    full = 0.010 + 0.001 * 100 + 1e-6 * 100 * 101 / 2
    assert ttft[False] == pytest.approx(full, abs=1e-12)
    saved = 0.001 * 48 + 1e-6 * 48 * 49 / 2
    assert ttft[True] == pytest.approx(full - saved, abs=1e-12)


def test_running_requests_share_cached_blocks() -> None:
    """B arrives while A decodes: it references A's 3 registered units instead of copying
    them, so the instance uses 3 blocks fewer than the two requests' tables add up to."""
    workload = _sharing(second_at=0.5, outputs=(400, 400))
    spec = small_spec(perf_model=PERF, prefix_caching=True)
    cluster = make_cluster(workload, {Pool.INTERACTIVE: (1, 8)}, spec, fast_forward=False)
    cluster.run_until(1.0)
    inst = cluster.instances[0]
    a, b = inst.running
    assert inst.cache is not None
    assert b.cached == [1, 2, 3, 50, 51, 52]  # A's 3 units, then its own full ones
    assert inst.cache.refs[1] == 2 and inst.cache.refs[50] == 1
    assert inst.used_blocks == a.blocks + b.blocks - 3
    cluster.run_until(100.0)
    assert inst.used_blocks == 0 and not inst.cache.refs
    # every unit A and B completed stays cached, free to evict: A's 6 full units and B's 3 own
    assert inst.cache.cached_units() == 9


def _held(cache: PrefixCache, hashes: tuple[int, ...], prompt: int, used: int) -> Request:
    """A request that computed its whole prompt (no hit), its units registered."""
    r = Request(0, 0, 0.0, prompt, 1, math.nan, hashes)
    units, _ = cache.lookup(r, used)
    assert units == 0
    cache.acquire(r, 0, used)
    r.computed = prompt
    r.blocks = -(-prompt // 16)
    cache.register(r)
    return r


def test_eviction_order_is_vllms() -> None:
    """Freed blocks join the free queue's tail, a request's last block first; allocations take
    the head: the least recently freed request's units go first, its tail before its prefix."""
    cache = PrefixCache(capacity_blocks=6, unit_tokens=16, unit_blocks=1)
    r1 = _held(cache, (10, 11), 33, used=0)  # 3 blocks: units 10, 11 and a partial one
    assert cache.release(r1, used=3) == 3
    r2 = _held(cache, (20, 21), 33, used=0)
    assert cache.release(r2, used=3) == 3
    # queue now: [1 uncached, 11, 10, 1 uncached, 21, 20]; allocating 4 blocks evicts 11, 10
    cache.settle(used=4)
    assert cache.evicted_units == 2
    probe = Request(1, 0, 0.0, 33, 1, math.nan, (10, 11))
    assert cache.lookup(probe, used=4) == (0, 0)
    probe = Request(2, 0, 0.0, 33, 1, math.nan, (20, 21))
    assert cache.lookup(probe, used=4) == (2, 2)  # cached and free: they cost 2 free blocks
    cache.settle(used=5)  # one more block: 21 goes (the queue's head); the prefix 20 stays
    assert cache.lookup(probe, used=5) == (1, 1)
    assert 20 in cache.free and 21 not in cache.free


def test_hit_stops_before_the_last_prompt_token() -> None:
    """A prompt whose every full unit is cached still computes its last token (vLLM caps the
    hit at prompt - 1 tokens): 32 tokens in 2 cached units hit one unit, 33 tokens hit two."""
    cache = PrefixCache(capacity_blocks=10, unit_tokens=16, unit_blocks=1)
    cache.release(_held(cache, (7, 8, 9), 48, used=0), used=3)
    assert cache.lookup(Request(1, 0, 0.0, 32, 1, math.nan, (7, 8)), used=0)[0] == 1
    assert cache.lookup(Request(1, 0, 0.0, 33, 1, math.nan, (7, 8, 9)), used=0)[0] == 2


def test_caching_off_ignores_hashes() -> None:
    """Prompt hashes without ``prefix_caching`` change nothing (existing scenarios stay the
    same, byte for byte)."""
    base = Workload.from_columns(
        arrival_s=[0.0, 0.5], klass=[0, 0], prompt_tokens=[100, 100], output_tokens=[30, 30]
    )
    hashed = Workload.from_columns(
        arrival_s=[0.0, 0.5],
        klass=[0, 0],
        prompt_tokens=[100, 100],
        output_tokens=[30, 30],
        prefix_blocks=((1, 2, 3, 4, 5, 6, 7), (1, 2, 3, 4, 5, 6, 8)),
        prefix_block_tokens=16,
    )
    out = []
    for w in (base, hashed):
        cluster = make_cluster(w, {Pool.INTERACTIVE: (1, 8)}, small_spec(perf_model=PERF))
        cluster.run_until(10.0)
        out.append((cluster.first_token_s.tolist(), cluster.finish_s.tolist()))
        assert cluster.instances[0].cache is None
    assert out[0] == out[1]


def test_unit_not_a_whole_number_of_blocks_is_refused() -> None:
    """Hashes of 24 tokens on 16-token blocks cannot be cached block-exactly: a clear error."""
    workload = Workload.from_columns(
        arrival_s=[0.0],
        klass=[0],
        prompt_tokens=[100],
        output_tokens=[3],
        prefix_blocks=((1, 2, 3, 4, 5),),
        prefix_block_tokens=24,
    )
    with pytest.raises(ValueError, match="24 tokens are not a whole number of KV blocks"):
        make_cluster(workload, {Pool.INTERACTIVE: (1, 8)}, small_spec(prefix_caching=True))


def test_prefix_routing_prefers_the_instance_holding_the_prefix() -> None:
    """Two instances; the first request lands on one, then a request sharing its prefix follows
    it there although the other is less loaded; with routing off it goes to the idle one."""
    for aware, expected in ((True, 0), (False, 1)):
        workload = _sharing(second_at=0.5, outputs=(400, 5))
        spec = small_spec(perf_model=PERF, prefix_caching=True)
        cluster = make_cluster(workload, {Pool.INTERACTIVE: (2, 8)}, spec, prefix_routing=aware)
        cluster.run_until(0.6)
        held = [[r.idx for r in (*i.running, *i.waiting[0])] for i in cluster.instances]
        assert 1 in held[expected], (aware, held)


def test_mooncake_hit_rate_with_one_instance_matches_an_lru_replay() -> None:
    """On the real Mooncake trace (hash_ids of 512 tokens), one instance at low load reaches
    the hit rate an independent LRU replay of the trace's blocks in arrival order gives with the
    same memory (880 units of 512 tokens), within 1.5 points; unbounded memory would give 65%."""
    from collections import OrderedDict

    from chiron_gym.backends.simulate import simulate
    from chiron_gym.scenario import load
    from chiron_gym.workload.trace import read_trace
    from tests.conftest import REPO, require_data

    path = require_data("mooncake/traces/synthetic_trace.jsonl")
    scenario = load(REPO / "docs" / "examples" / "mooncake-one-instance.toml")
    sim = simulate(scenario, 0)["prefix_hit_rate"]["interactive"]
    trace = read_trace(path)
    assert trace.blocks is not None
    units = scenario.cluster.pools[0].instance.kv_capacity_tokens // 512
    lru: OrderedDict[int, None] = OrderedDict()
    queried = hit = 0
    for ids, prompt in zip(trace.blocks, trace.prompt_tokens.tolist(), strict=True):
        k = 0
        while k < min(len(ids), (prompt - 1) // 512) and ids[k] in lru:
            k += 1
        queried += prompt
        hit += k * 512
        for h in ids[: prompt // 512]:
            lru[h] = None
            lru.move_to_end(h)
        while len(lru) > units:
            lru.popitem(last=False)
    assert units == 880
    assert abs(sim - hit / queried) < 0.015, (sim, hit / queried)
