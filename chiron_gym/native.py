"""The compiled simulator core: which modules are compiled, and whether they are in use.

``pip install -e .`` (``setup.py``) compiles the modules of ``COMPILED`` with mypyc into one
extension group (``chiron_gym/native__mypyc``), beside their sources. The sources stay the
reference: the compiled and the pure-Python core give the same episodes byte for byte
(``tests/sim/test_native.py``), and the package falls back to the sources, all or nothing, when

- ``CHIRON_PURE_PYTHON=1`` is set (to debug, profile or compare),
- a compiled module is missing (no compiler at install, or ``CHIRON_NATIVE=0``): ``mode()``
  and each benchmark row's ``core`` say so, or
- a source differs from the one its module was compiled from (edited since the build: the
  SHA-256 digests ``setup.py`` recorded in ``MANIFEST``; rebuild with ``pip install -e .`` or
  ``make native``); a warning says so.

``install()`` runs when ``chiron_gym`` is imported, before any module of the group.

In a compiled module a class is a native class (fixed attributes, read in C) unless marked
``@mypyc_attr(native_class=False)``: the frozen dataclasses (specs, configs, the workload) are so
marked, because a compiled frozen dataclass cannot be unpickled (an environment is pickled mid
episode) and they are read once per iteration at most. The other classes are marked
``@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)``: pickled by their attributes,
as the sources are (mypy 2.4.1's mypyc skips ``__init__`` of a class that is serializable only;
allowing interpreted subclasses restores the call).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The hot path: the event core and the iteration-time model it calls per iteration. Modules of
# one group call each other natively, so the group is compiled and loaded as one.
COMPILED: tuple[str, ...] = (
    "chiron_gym.sim.request",
    "chiron_gym.sim.events",
    "chiron_gym.sim.queues",
    "chiron_gym.sim.perf_model",
    "chiron_gym.sim.report",
    "chiron_gym.sim.ledger",
    "chiron_gym.sim.prefix_cache",
    "chiron_gym.sim.specs",
    "chiron_gym.sim.stretch",
    "chiron_gym.sim.steady",
    "chiron_gym.sim.instance_base",
    "chiron_gym.sim.instance",
    "chiron_gym.sim.instance_report",
    "chiron_gym.sim.routing",
    "chiron_gym.sim.faults",
    "chiron_gym.sim.cluster_base",
    "chiron_gym.sim.cluster",
    "chiron_gym.profiles.forms",
    "chiron_gym.profiles.perf",
)
GROUP = "chiron_gym.native"  # the shared library: chiron_gym/native__mypyc.<abi>.so
# Written by setup.py when it compiles: the SHA-256 of each source the extensions were built from.
MANIFEST = "chiron_gym/native_build.json"
PURE_ENV = "CHIRON_PURE_PYTHON"

_ROOT = Path(__file__).resolve().parent.parent
_state: dict[str, str] = {}


def source_path(module: str) -> Path:
    """The ``.py`` source of a module of ``COMPILED``."""
    return _ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _extension(module: str) -> Path | None:
    base = source_path(module).with_suffix("")
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            return candidate
    return None


def source_digest(module: str) -> str:
    """SHA-256 of a compiled module's source (``setup.py`` records them in ``MANIFEST``)."""
    return hashlib.sha256(source_path(module).read_bytes()).hexdigest()


def _decide() -> tuple[bool, str]:
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return False, f"pure Python ({PURE_ENV} is set)"
    if _extension(GROUP + "__mypyc") is None:
        return False, "pure Python (not compiled: no extension group)"
    for module in COMPILED:
        if _extension(module) is None:
            return False, f"pure Python (not compiled: no extension for {module})"
    try:
        built = json.loads(_ROOT.joinpath(*MANIFEST.split("/")).read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        built = {}
    stale = [m for m in COMPILED if built.get(m) != source_digest(m)]
    if stale:
        warnings.warn(
            f"chiron-gym: {', '.join(stale)} changed since the compiled core was built; running "
            "the pure-Python sources (same results, slower). Rebuild: pip install -e . "
            "(or make native).",
            stacklevel=3,
        )
        return False, f"pure Python (compiled core older than {stale[0]})"
    return True, "compiled (mypyc)"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Loads the modules of ``COMPILED`` from their ``.py`` sources, never the extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def install() -> None:
    """Choose compiled or pure Python for the group, once, before its first import."""
    if _state:
        return
    compiled, why = _decide()
    _state["mode"] = why
    if not compiled:
        loaded = [m for m in COMPILED if m in sys.modules]
        if loaded:  # too late to choose (imported before chiron_gym): say what is running
            _state["mode"] = f"{why}; already imported: {loaded[0]}"
        sys.meta_path.insert(0, _SourceFinder())


def mode() -> str:
    """How the simulator core runs: ``compiled (mypyc)`` or ``pure Python (why)``."""
    install()
    return _state["mode"]


def is_compiled() -> bool:
    """Whether the simulator core in use is the compiled one."""
    from chiron_gym.sim import instance

    return not str(getattr(instance, "__file__", "")).endswith(".py")


__all__ = [
    "COMPILED",
    "GROUP",
    "MANIFEST",
    "PURE_ENV",
    "install",
    "is_compiled",
    "mode",
    "source_digest",
    "source_path",
]
