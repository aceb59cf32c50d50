"""The shared-prefix generator: system prompts per tenant, conversations that grow."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from chiron_gym.workload.prefix import PrefixSpec


def test_system_prompt_units_are_shared_within_a_tenant_only() -> None:
    spec = PrefixSpec(block_tokens=16, system_tokens=40, tenants=2)
    prompt = np.full(200, 30, dtype=np.int64)
    out, chains = spec.apply(np.random.default_rng(0), prompt, np.full(200, 5, dtype=np.int64))
    assert np.all(out == 70)  # 40 of system prompt + 30 new: single-turn conversations
    firsts = {c[:2] for c in chains}  # the system prompt's 2 whole units (40 // 16)
    assert len(firsts) == 2  # one pair per tenant
    assert len({c[2] for c in chains}) == 200  # the straddling unit is each request's own


def test_a_conversation_turn_extends_the_previous_prompt_and_output() -> None:
    spec = PrefixSpec(block_tokens=16, turns=1e9)  # one conversation, never closed
    prompt = np.array([50, 20, 10], dtype=np.int64)
    output = np.array([30, 7, 1], dtype=np.int64)
    out, chains = spec.apply(np.random.default_rng(0), prompt, output)
    assert out.tolist() == [50, 50 + 30 + 20, 100 + 7 + 10]
    for earlier, later in itertools.pairwise(chains):
        assert later[: len(earlier)] == earlier  # same content, same hashes: a prefix


def test_prompts_stop_growing_at_the_cap() -> None:
    spec = PrefixSpec(block_tokens=16, turns=1e9, max_prompt_tokens=300)
    prompt = np.full(50, 100, dtype=np.int64)
    out, _ = spec.apply(np.random.default_rng(1), prompt, np.full(50, 100, dtype=np.int64))
    assert out.max() <= 300


def test_same_seed_same_chains_and_bad_specs_refused() -> None:
    spec = PrefixSpec(block_tokens=32, system_tokens=100, tenants=3, turns=3.0)
    prompt = np.arange(1, 101, dtype=np.int64) * 7
    a = spec.apply(np.random.default_rng(5), prompt, prompt)
    b = spec.apply(np.random.default_rng(5), prompt, prompt)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="turns must be >= 1"):
        PrefixSpec(turns=0.5)
