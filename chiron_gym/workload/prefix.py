"""Shared prompt prefixes for generated traffic: system prompts per tenant and conversations.

A scenario source's ``[workload.prefix]`` table turns its prompts into chains of content hashes
(``Workload.prefix_blocks``), one per ``block_tokens`` tokens, which an instance with prefix
caching reuses (``sim/prefix_cache.py``):

- ``system_tokens``, ``tenants``: every request starts with its tenant's system prompt (tenants
  drawn uniformly), the same tokens for every request of that tenant;
- ``turns``: the mean number of turns of a conversation. A request starts a new conversation with
  probability ``1 / turns``, else continues one still open (chosen uniformly), whose length is
  drawn geometric with that mean. A turn's prompt is the previous turn's prompt and output
  followed by the new message (the drawn prompt length), so prompts grow along a conversation
  (up to ``max_prompt_tokens``; a turn that would pass it starts a new conversation).

Hashes: a unit wholly inside the system prompt is keyed by (tenant, unit), any other by
(conversation, unit): a conversation only ever appends, so its turns agree on every position (a
single-turn conversation is one request). The keys are packed into distinct integer ranges.
Only prompt tokens are cached: a turn reuses the previous turn's prompt and (a simplification)
recomputes the previous turn's output, whose full blocks vLLM would also have cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_SYSTEM, _CONVERSATION = 1 << 60, 2 << 60
_UNIT_BITS = 20  # units per prompt: at most 2**20 (a 2**29-token prompt at 512 per unit)


@dataclass(frozen=True, slots=True)
class PrefixSpec:
    """A source's shared-prefix model (see the module docstring)."""

    block_tokens: int = 16
    system_tokens: int = 0
    tenants: int = 1
    turns: float = 1.0
    max_prompt_tokens: int = 32_768

    def __post_init__(self) -> None:
        if self.block_tokens < 1 or self.tenants < 1 or self.system_tokens < 0:
            raise ValueError("PrefixSpec: block_tokens and tenants >= 1, system_tokens >= 0")
        if not self.turns >= 1.0:
            raise ValueError(f"PrefixSpec.turns must be >= 1, got {self.turns!r}")
        if self.max_prompt_tokens <= self.system_tokens:
            raise ValueError("PrefixSpec.max_prompt_tokens must exceed system_tokens")

    def apply(
        self,
        rng: np.random.Generator,
        prompt: npt.NDArray[np.int64],
        output: npt.NDArray[np.int64],
        first_id: int = 0,
    ) -> tuple[npt.NDArray[np.int64], tuple[tuple[int, ...], ...]]:
        """Prompts (the new messages ``prompt``, in arrival order) with their shared prefixes
        prepended, and each one's hash chain. ``first_id`` numbers this source's requests apart
        from other sources'."""
        n = len(prompt)
        unit = self.block_tokens
        tenant = rng.integers(self.tenants, size=n)
        u_new = rng.random(n)
        u_pick = rng.random(n)
        lengths = rng.geometric(1.0 / self.turns, size=n) if self.turns > 1 else np.ones(n, int)
        # open conversations: id -> (tenant, history tokens after the system prompt, turns left)
        open_ids: list[int] = []
        state: dict[int, tuple[int, int, int]] = {}
        out_prompt = np.empty(n, dtype=np.int64)
        chains: list[tuple[int, ...]] = []
        next_conv = first_id
        for i in range(n):
            new = int(prompt[i])
            conv = -1
            if open_ids and u_new[i] >= 1.0 / self.turns:
                conv = open_ids[int(u_pick[i] * len(open_ids))]
                t, hist, left = state[conv]
                if self.system_tokens + hist + new > self.max_prompt_tokens:
                    open_ids.remove(conv)
                    del state[conv]
                    conv = -1
            if conv < 0:
                conv = next_conv
                next_conv += 1
                t, hist, left = int(tenant[i]), 0, int(lengths[i])
                open_ids.append(conv)
            shared = self.system_tokens + hist  # tokens before this turn's new message
            total = min(shared + new, self.max_prompt_tokens)
            out_prompt[i] = total
            in_system = self.system_tokens // unit
            chain = [_SYSTEM | (t << _UNIT_BITS) | j for j in range(in_system)]
            chain += [
                _CONVERSATION | (conv << _UNIT_BITS) | j
                for j in range(in_system, -(-total // unit))
            ]
            chains.append(tuple(chain))
            left -= 1
            if left <= 0:
                open_ids.remove(conv)
                state.pop(conv, None)
            else:
                state[conv] = (t, total - self.system_tokens + int(output[i]), left)
        return out_prompt, tuple(chains)
