"""Snapshots of an episode (``AutoscaleEnv.snapshot`` / ``restore``): its state pickled, with
what no episode changes shared by reference rather than copied.

How the shared objects are left out costs more than anything else here. A ``persistent_id``
method is a Python call for every object pickled, each float and int of a queue included: on
``default`` that was two thirds of a snapshot's time. Instead the pickler's memo starts with the
shared objects (``Pickler.memo`` takes ``{id: (index, object)}``), so a reference to one is
written as a memo ``GET`` by the C pickler with no call back into Python, and the data begins
with a preamble that puts the same objects at the same memo indices when it is loaded
(``BININT i; BINPERSID; MEMOIZE; POP`` for each: the unpickler's ``persistent_load`` is called
once per shared object, not per object). CPython 3.11's ``Unpickler.memo`` setter drops what it
is given, hence the preamble rather than a preset unpickler memo.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

_PROTOCOL = 5
_PROTO_HEADER = bytes([0x80, _PROTOCOL])  # PROTO 5, which every pickle of the body starts with


@dataclass(frozen=True, eq=False)
class Snapshot:
    """An episode's whole state at a decision point (``AutoscaleEnv.snapshot``); opaque.

    ``data`` is the state pickled with the objects no episode changes left out and kept by
    reference (``shared``): restoring unpickles it, so a snapshot taken once and restored many
    times (the planners' forks) pays the copy's cost mostly once."""

    data: bytes
    shared: tuple[object, ...]  # the scenario, ``Backend.unchanging`` and the settings
    obs: npt.NDArray[np.float32]  # the observation then (``restore`` returns it)
    steps: int  # decisions taken when it was taken
    nvec: tuple[int, ...]  # the action space it was taken in
    mode: str


def distinct(objects: Iterable[object]) -> tuple[object, ...]:
    """``objects`` without repeats (by identity), in order: the shared objects' memo indices."""
    seen: set[int] = set()
    out: list[object] = []
    for obj in objects:
        if id(obj) not in seen:
            seen.add(id(obj))
            out.append(obj)
    return tuple(out)


def _preamble(count: int) -> bytes:
    """Opcodes that load shared object ``i`` (by ``persistent_load(i)``) into memo slot ``i``."""
    one = struct.Struct("<ci2c")
    return b"".join(one.pack(b"J", i, b"Q", b"\x94") + b"0" for i in range(count))


def dump(state: dict[str, Any], shared: tuple[object, ...]) -> bytes:
    """``state`` pickled, each object of ``shared`` (``distinct``) written as a reference."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=_PROTOCOL)
    pickler.memo = {id(obj): (i, obj) for i, obj in enumerate(shared)}  # type: ignore[assignment,unused-ignore]
    pickler.dump(state)
    body = out.getbuffer()
    if bytes(body[:2]) != _PROTO_HEADER:  # pragma: no cover - the C pickler always writes it
        raise RuntimeError("snapshot: the pickle does not start with PROTO 5")
    return _PROTO_HEADER + _preamble(len(shared)) + bytes(body[2:])


class _Loader(pickle.Unpickler):
    """Reads what ``dump`` wrote, the shared objects from ``shared``."""

    def __init__(self, data: bytes, shared: tuple[object, ...]) -> None:
        super().__init__(io.BytesIO(data))
        self._shared = shared

    def persistent_load(self, pid: Any) -> object:
        return self._shared[pid]


def load(data: bytes, shared: tuple[object, ...]) -> dict[str, Any]:
    """The state ``dump`` pickled, a fresh copy each time, sharing the objects of ``shared``."""
    state = _Loader(data, shared).load()
    if not isinstance(state, dict):  # pragma: no cover - dump pickles a dict
        raise TypeError(f"snapshot data holds {type(state).__name__}, not an episode's state")
    return state


__all__ = ["Snapshot", "distinct", "dump", "load"]
