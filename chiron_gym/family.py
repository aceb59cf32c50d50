"""Scenario families (domain randomisation): a scenario TOML whose values may be draws.

Anywhere a scenario file has a value, a family file may put a table with one key:

- ``{ range = [lo, hi] }``: uniform in ``[lo, hi]``;
- ``{ log_range = [lo, hi] }``: log-uniform (``0 < lo <= hi``);
- ``{ int_range = [lo, hi] }``: an integer, uniform over ``lo..hi`` inclusive;
- ``{ choice = [a, b, ...] }``: one of the values (tables too, which may hold draws themselves).

``Family.sample(seed)`` walks the document in file order drawing from the seed's ``family``
stream (``scenario.stream``), so the same seed gives the same scenario, and validates the result
as a scenario (``scenario.parse``): every message names the family file and the key. The nominal
scenario (midpoints, geometric midpoints, the first choice) fixes what every draw must keep: the
pools that exist (the environment's action and observation spaces depend on them).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import scenarios as bundled
from chiron_gym.scenario import Scenario, ScenarioError, parse, stream

PREFIX = "family:"
DRAWS = ("range", "log_range", "int_range", "choice")


class FamilyError(ScenarioError):
    """A family file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Family:
    """A scenario family: its document (with draws), where it came from, its nominal scenario."""

    name: str
    source: str
    document: dict[str, Any]
    nominal: Scenario

    def sample(self, seed: int) -> tuple[Scenario, dict[str, Any]]:
        """The scenario of ``seed`` and what was drawn, by key path (``workload[0].arrival...``)."""
        drawn: dict[str, Any] = {}
        rng = stream(seed, "family")
        doc = _resolve(self.document, self.source, "", lambda spec, path: _draw(spec, rng, path))
        _collect(self.document, doc, "", drawn)
        sc = parse(doc, name=f"{self.name}@{seed}", source=self.source)
        pools = {p.pool for p in sc.cluster.pools}
        if pools != {p.pool for p in self.nominal.cluster.pools}:
            raise FamilyError(
                f"{self.source}: seed {seed} drew pools {sorted(p.name.lower() for p in pools)}; "
                "every draw must keep the nominal scenario's pools"
            )
        return sc, drawn


def is_family(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a family (``family:NAME``, or a file with draws)."""
    text = str(name_or_path)
    if text.startswith(PREFIX):
        return True
    p = Path(text)
    if p.suffix != ".toml" or not p.is_file():
        return False
    try:
        with p.open("rb") as f:
            return _has_draws(tomllib.load(f))
    except (OSError, tomllib.TOMLDecodeError):
        return False


def names() -> list[str]:
    """Names of the bundled families (``scenarios/families/*.toml``)."""
    root = Path(bundled.path("default")).parent / "families"
    return sorted(p.stem for p in root.glob("*.toml"))


def load_family(name_or_path: str | Path) -> Family:
    """Load ``family:NAME`` (bundled) or a family file by path."""
    text = str(name_or_path)
    if text.startswith(PREFIX):
        name = text[len(PREFIX) :]
        if name not in names():
            raise FamilyError(f"unknown family {name!r}; known: {', '.join(names())}")
        p = Path(bundled.path("default")).parent / "families" / f"{name}.toml"
    else:
        p = Path(text)
    try:
        with p.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise FamilyError(f"{p}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise FamilyError(f"{p}: not valid TOML: {e}") from e
    source = str(p)
    nominal_doc = _resolve(doc, source, "", _nominal)
    nominal = parse(nominal_doc, name=p.stem, source=source)
    return Family(name=p.stem, source=source, document=doc, nominal=nominal)


# ---------------------------------------------------------------------------- internals


def _draw_spec(value: Any) -> tuple[str, Any] | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if key in DRAWS:
            return key, value[key]
    return None


def _has_draws(value: Any) -> bool:
    if _draw_spec(value) is not None:
        return True
    if isinstance(value, dict):
        return any(_has_draws(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_draws(v) for v in value)
    return False


def _check(kind: str, args: Any, source: str, path: str) -> None:
    where = f"{source}: {path or '(top)'}"
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise FamilyError(f"{where}: choice must be a non-empty array")
        return
    ok = (
        isinstance(args, list)
        and len(args) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in args)
        and args[0] <= args[1]
    )
    if not ok:
        raise FamilyError(f"{where}: {kind} must be [low, high] with low <= high, got {args!r}")
    if kind == "log_range" and args[0] <= 0:
        raise FamilyError(f"{where}: log_range needs low > 0, got {args!r}")
    if kind == "int_range" and not all(isinstance(x, int) for x in args):
        raise FamilyError(f"{where}: int_range takes integers, got {args!r}")


def _draw(spec: tuple[str, Any], rng: np.random.Generator, path: str) -> Any:
    kind, args = spec
    if kind == "choice":
        return args[int(rng.integers(0, len(args)))]
    lo, hi = args
    if kind == "int_range":
        return int(rng.integers(lo, hi + 1))
    u = float(rng.random())
    if kind == "log_range":
        return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
    return float(lo + u * (hi - lo))


def _nominal(spec: tuple[str, Any], path: str) -> Any:
    kind, args = spec
    if kind == "choice":
        return args[0]
    lo, hi = args
    if kind == "int_range":
        return (lo + hi) // 2
    if kind == "log_range":
        return float(math.sqrt(lo * hi))
    return float((lo + hi) / 2)


def _resolve(value: Any, source: str, path: str, pick: Any) -> Any:
    """``value`` with every draw replaced by ``pick(spec, path)`` (recursively, in file order)."""
    spec = _draw_spec(value)
    if spec is not None:
        _check(spec[0], spec[1], source, path)
        return _resolve(pick(spec, path), source, path, pick)
    if isinstance(value, dict):
        return {
            k: _resolve(v, source, f"{path}.{k}" if path else k, pick) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, source, f"{path}[{i}]", pick) for i, v in enumerate(value)]
    return value


def _collect(template: Any, drawn_doc: Any, path: str, out: dict[str, Any]) -> None:
    """What the draws of ``template`` became in ``drawn_doc``, by key path."""
    if _draw_spec(template) is not None:
        out[path] = drawn_doc
        return
    if isinstance(template, dict) and isinstance(drawn_doc, dict):
        for k, v in template.items():
            _collect(v, drawn_doc.get(k), f"{path}.{k}" if path else k, out)
    elif isinstance(template, list) and isinstance(drawn_doc, list):
        for i, (v, d) in enumerate(zip(template, drawn_doc, strict=True)):
            _collect(v, d, f"{path}[{i}]", out)


__all__ = ["DRAWS", "PREFIX", "Family", "FamilyError", "is_family", "load_family", "names"]
