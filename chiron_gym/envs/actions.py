"""The action: per pool an instance change (global level) and a batch-cap change (local level).

``MultiDiscrete`` with start 0. Instance dimension: choice ``i`` means ``i - k`` instances
(``k = max_step_change``). Batch-cap dimension: ``HALVE, KEEP, INCREASE, DOUBLE``; increase adds
a quarter (at least one). The pools always take the same slots (``Autoscale-v0``: the three
aggregated pools; ``Autoscale-v1``: those, then prefill and decode); an absent pool
accepts only "no change".
``action_mode`` picks which levels the agent controls. ``"target"`` (issue 43) has the agent
name each pool's instance count instead (choice ``i``: ``i`` instances, up to ``max_target``);
the pool moves towards it by at most ``k`` a decision, as every agent's changes are limited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from chiron_gym.backends.base import Backend, PoolState
from chiron_gym.control.caps import CAP_CHOICES, DOUBLE, HALVE, INCREASE, KEEP, new_cap
from chiron_gym.sim import ALL_POOL_NAMES, POOLS, Pool

MODES = ("full", "global", "local", "target")
MAX_TARGET = 40  # the target mode's largest count (the largest pool maximum bundled)


@dataclass
class Decision:
    """What one action asked for and what was applied."""

    deltas: dict[str, int] = field(default_factory=dict)  # applied instance changes
    caps: dict[str, int] = field(default_factory=dict)  # batch caps after the action
    clipped: dict[str, int] = field(default_factory=dict)  # requested - applied, per pool

    @property
    def churn(self) -> int:
        return sum(abs(d) for d in self.deltas.values())


class ActionLayout:
    """Maps between the flat ``MultiDiscrete`` vector and per-pool choices."""

    def __init__(
        self, mode: str, k: int, pools: tuple[Pool, ...] = POOLS, max_target: int = MAX_TARGET
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"action_mode must be one of {MODES}, got {mode!r}")
        for name, value in (("max_step_change", k), ("max_target", max_target)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        k = int(k)
        self.mode, self.k = mode, k
        self.pools = pools
        self.targets = mode == "target"  # the instance level names counts, not changes
        self.max_target = int(max_target)
        self.has_global = mode in ("full", "global", "target")
        self.has_local = mode in ("full", "local", "target")

    @property
    def nvec(self) -> list[int]:
        out: list[int] = []
        if self.targets:
            out += [self.max_target + 1] * len(self.pools)
        elif self.has_global:
            out += [2 * self.k + 1] * len(self.pools)
        if self.has_local:
            out += [len(CAP_CHOICES)] * len(self.pools)
        return out

    def split(self, action: npt.ArrayLike) -> tuple[list[int] | None, list[int] | None]:
        """``(instance deltas, cap choices)``; None for a level the agent does not control.
        In the target mode the first are the counts asked for (``to_deltas`` turns them into
        changes)."""
        raw = np.asarray(action)
        if raw.shape != (len(self.nvec),):
            raise ValueError(
                f"action of shape {raw.shape}: expected shape ({len(self.nvec)},), the "
                f"MultiDiscrete {self.nvec}"
            )
        if raw.dtype.kind not in "iub":
            if raw.dtype.kind != "f" or not np.all(np.isfinite(raw)):
                raise ValueError(
                    f"action {raw.tolist()}: expected integer choices of the MultiDiscrete "
                    f"{self.nvec}"
                )
            if not np.all(raw == np.round(raw)):
                raise ValueError(
                    f"action {raw.tolist()}: expected integers, not fractions (choices of the "
                    f"MultiDiscrete {self.nvec}; a float action is refused, not truncated)"
                )
        a = raw.astype(np.int64)
        for i, (v, n) in enumerate(zip(a, self.nvec, strict=True)):
            if not 0 <= v < n:
                raise ValueError(f"action[{i}] = {v}: expected 0 <= value < {n}")
        deltas = caps = None
        i = 0
        n = len(self.pools)
        if self.has_global:
            deltas = [int(v) if self.targets else int(v) - self.k for v in a[:n]]
            i = n
        if self.has_local:
            caps = [int(v) for v in a[i : i + n]]
        return deltas, caps

    def join(
        self, deltas: Sequence[int] | None, caps: Sequence[int] | None
    ) -> npt.NDArray[np.int64]:
        """The flat action for per-pool choices: the inverse of ``split``.

        A level this layout has and the caller leaves ``None`` is kept (no instance change, or
        ``KEEP`` for every cap); a level it does not have is ignored. Choices for fewer pools
        than the layout has are the first pools' (an agent of the three aggregated pools in
        ``Autoscale-v1``): the others keep their instances and caps.
        """
        n = len(self.pools)
        if self.targets:  # "keep" is the live count, which a layout does not know
            raise ValueError(
                "the target action mode names instance counts: an agent of changes (a rule "
                "agent) plays in its own action mode, not 'target'"
            )
        for level in (deltas, caps):
            if level is not None and len(level) not in (len(POOLS), n):
                raise ValueError(
                    f"{len(level)} choices for a layout of {n} pools: expected {n} (or "
                    f"{len(POOLS)}, the aggregated pools')"
                )
        out: list[int] = []
        if self.has_global:
            d = list(deltas) if deltas is not None else []
            out += [x + self.k for x in d + [0] * (n - len(d))]
        if self.has_local:
            c = list(caps) if caps is not None else []
            out += c + [KEEP] * (n - len(c))
        return np.asarray(out, dtype=np.int64)

    def to_deltas(self, targets: Sequence[int], states: Sequence[PoolState]) -> list[int]:
        """The target mode's counts as this decision's changes: towards each target by at most
        ``k`` (an absent pool: none). Bounds and the GPU budget clip them as any change."""
        return [
            max(-self.k, min(self.k, t - st.live)) if st.exists else 0
            for t, st in zip(targets, states, strict=True)
        ]

    def masks(self, states: list[PoolState], gpus_in_use: int, max_gpus: int | None) -> np.ndarray:
        """Flat boolean mask, ``sum(nvec)`` long: what each dimension may choose now."""
        parts: list[np.ndarray] = []
        if self.targets:
            for st in states:
                m = np.zeros(self.max_target + 1, dtype=bool)
                if not st.exists:
                    m[0] = True
                    parts.append(m)
                    continue
                b = st.bounds
                lo, hi = b.min_instances, min(b.max_instances, self.max_target)
                if max_gpus is not None:  # the first step must fit the budget
                    room = max(0, (max_gpus - gpus_in_use) // b.gpus_per_instance)
                    hi = min(hi, st.live + room) if room < self.k else hi
                m[lo : hi + 1] = True
                if st.live <= self.max_target:
                    m[st.live] = True  # no change is always allowed
                parts.append(m)
        elif self.has_global:
            for st in states:
                m = np.zeros(2 * self.k + 1, dtype=bool)
                for i in range(2 * self.k + 1):
                    d = i - self.k
                    if not st.exists:
                        m[i] = d == 0
                        continue
                    ok = st.bounds.allows(st.live, d)
                    if d > 0 and max_gpus is not None:
                        ok &= gpus_in_use + d * st.bounds.gpus_per_instance <= max_gpus
                    if d < 0:
                        ok &= st.live + d >= 0
                    m[i] = ok or d == 0
                parts.append(m)
        if self.has_local:
            for st in states:
                m = np.ones(len(CAP_CHOICES), dtype=bool)
                if not st.exists:
                    m[:] = False
                    m[KEEP] = True
                else:
                    m[HALVE] = st.batch_cap > 1
                    m[INCREASE] = m[DOUBLE] = st.batch_cap < st.bounds.max_batch_cap
                parts.append(m)
        return np.concatenate(parts)


def apply(
    backend: Backend,
    deltas: list[int] | None,
    caps: list[int] | None,
    max_gpus: int | None,
    pools: tuple[Pool, ...] = POOLS,
    layout: ActionLayout | None = None,
) -> Decision:
    """Apply per-pool choices (in the order of ``pools``), clipping to bounds and the GPU
    budget (scale-downs first). With a ``layout`` of the target mode, ``deltas`` are the counts
    asked for (``ActionLayout.to_deltas``)."""
    d = Decision()
    states = [backend.pool_state(p) for p in pools]
    if layout is not None and layout.targets and deltas is not None:
        deltas = layout.to_deltas(deltas, states)
    names = [ALL_POOL_NAMES[p] for p in pools]
    if caps is not None:
        for pool, name, st, choice in zip(pools, names, states, caps, strict=True):
            if st.exists:
                cap = new_cap(st.batch_cap, choice, st.bounds.max_batch_cap)
                if cap != st.batch_cap:
                    backend.set_batch_cap(pool, cap)
                d.caps[name] = cap
    if deltas is not None:
        order = sorted(range(len(pools)), key=lambda i: deltas[i])  # downs before ups
        for i in order:
            pool, name, st, want = pools[i], names[i], states[i], deltas[i]
            if not st.exists:
                applied = 0
            else:
                applied = st.bounds.clamp(st.live, want)
                if applied > 0 and max_gpus is not None:
                    room = (max_gpus - backend.gpus_in_use()) // st.bounds.gpus_per_instance
                    applied = max(0, min(applied, room))
                applied = backend.scale(pool, applied) if applied else 0
            d.deltas[name] = applied
            if applied != want:
                d.clipped[name] = want - applied
    return d


__all__ = [
    "CAP_CHOICES",
    "DOUBLE",
    "HALVE",
    "INCREASE",
    "KEEP",
    "MAX_TARGET",
    "MODES",
    "ActionLayout",
    "Decision",
    "apply",
    "new_cap",
]
