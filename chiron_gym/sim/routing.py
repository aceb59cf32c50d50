"""Where an arriving request goes: among a class's pools in order (``cluster.ROUTES``), the
instance with room that is least loaded, or, with prefix-aware routing, the one whose prefix
cache holds the longest prefix of its prompt (ties: the least loaded)."""

from __future__ import annotations

from chiron_gym.sim.instance import Instance
from chiron_gym.sim.request import Pool


def least_loaded(
    live: dict[Pool, list[Instance]], pools: tuple[Pool, ...], klass: int
) -> Instance | None:
    """The least loaded instance with room for ``klass`` in the first of ``pools`` that has
    one (ties: the earliest started); ``None`` when none has room."""
    for pool in pools:
        best: Instance | None = None
        best_load = 0
        for inst in live[pool]:
            if inst.room_for(klass):
                load = inst.load
                if best is None or load < best_load:
                    best, best_load = inst, load
        if best is not None:
            return best
    return None


def longest_prefix(
    live: dict[Pool, list[Instance]], pools: tuple[Pool, ...], klass: int, hashes: tuple[int, ...]
) -> Instance | None:
    """``least_loaded``, preferring the instance whose cache holds the longest prefix of the
    prompt whose block hashes are ``hashes``."""
    for pool in pools:
        best: Instance | None = None
        best_key = (0, 0)
        for inst in live[pool]:
            if inst.room_for(klass):
                cache = inst.cache
                match = 0 if cache is None else cache.match_units(hashes)
                key = (-match, inst.load)
                if best is None or key < best_key:
                    best, best_key = inst, key
        if best is not None:
            return best
    return None
