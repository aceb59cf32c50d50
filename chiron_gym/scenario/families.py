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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import scenarios as bundled
from chiron_gym.scenario.parse import parse
from chiron_gym.scenario.paths import bundled_path, read_document
from chiron_gym.scenario.spec import Scenario, ScenarioError
from chiron_gym.scenario.streams import stream

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
        doc = _resolve(self.document, self.source, "", lambda spec: _draw(spec, rng), drawn)
        sc = parse(doc, name=f"{self.name}@{seed}", source=self.source)
        pools = {p.pool for p in sc.cluster.pools}
        if pools != {p.pool for p in self.nominal.cluster.pools}:
            raise FamilyError(
                f"{self.source}: seed {seed} drew pools {sorted(p.name.lower() for p in pools)}; "
                "every draw must keep the nominal scenario's pools"
            )
        return sc, drawn


def is_family(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a family (``family:NAME``, or a file with draws; not
    ``family:NAME@SEED``, which is one fixed draw)."""
    text = str(name_or_path)
    if text.startswith(PREFIX):
        return "@" not in text
    p = Path(text)
    if p.suffix != ".toml" or not p.is_file():
        return False
    try:
        return _has_draws(read_document(p))
    except ScenarioError:
        return False


def family_of(scenario: str | Path | Scenario) -> Family | None:
    """The family ``scenario`` names, or None when it names a plain scenario (or is one)."""
    if isinstance(scenario, Scenario) or not is_family(scenario):
        return None
    return load_family(scenario)


def names() -> list[str]:
    """Names of the bundled families (``scenarios/families/*.toml``)."""
    return bundled.family_names()


def draw(spec: str) -> Scenario:
    """``family:NAME@SEED``: the scenario ``NAME@SEED`` that the family draws for reset seed
    ``SEED`` (a fixed scenario, e.g. an unseen draw in a benchmark suite)."""
    name, _, seed_text = spec.rpartition("@")
    try:
        seed = int(seed_text)
        if seed < 0:
            raise ValueError
    except ValueError:
        raise ScenarioError(
            f"{spec}: expected family:NAME@SEED with SEED an integer >= 0, got {seed_text!r}"
        ) from None
    fam = load_family(name)
    scenario, _ = fam.sample(seed)
    return replace(scenario, name=f"{fam.name}@{seed}")


def load_family(name_or_path: str | Path) -> Family:
    """Load ``family:NAME`` (bundled) or a family file by path."""
    text = str(name_or_path)
    if text.startswith(PREFIX):
        p = bundled_path("family", text[len(PREFIX) :], names(), bundled.family_path)
    else:
        p = Path(text)
    doc = read_document(p)
    source = str(p)
    nominal = parse(_resolve(doc, source, "", _nominal), name=p.stem, source=source)
    # Every draw at its low end, then every draw at its high end (a choice: its first, then its
    # last option) must parse too: a range that reaches an invalid value fails here, naming the
    # key, rather than in the one episode in thousands that draws it.
    for end, pick in (("low", _low), ("high", _high)):
        try:
            sc = parse(_resolve(doc, source, "", pick), name=p.stem, source=source)
        except ScenarioError as e:
            raise FamilyError(f"{e} (with every draw at its {end} end)") from None
        if {q.pool for q in sc.cluster.pools} != {q.pool for q in nominal.cluster.pools}:
            raise FamilyError(
                f"{source}: with every draw at its {end} end the pools differ from the nominal "
                "scenario's; every draw must keep them"
            )
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


def _draw(spec: tuple[str, Any], rng: np.random.Generator) -> Any:
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


def _nominal(spec: tuple[str, Any]) -> Any:
    kind, args = spec
    if kind == "choice":
        return args[0]
    lo, hi = args
    if kind == "int_range":
        return (lo + hi) // 2
    if kind == "log_range":
        return float(math.sqrt(lo * hi))
    return float((lo + hi) / 2)


def _low(spec: tuple[str, Any]) -> Any:
    return spec[1][0]  # a range's low end, a choice's first option


def _high(spec: tuple[str, Any]) -> Any:
    return spec[1][-1]


def _resolve(
    value: Any,
    source: str,
    path: str,
    pick: Callable[[tuple[str, Any]], Any],
    drawn: dict[str, Any] | None = None,
) -> Any:
    """``value`` with every draw replaced by ``pick(spec)`` (recursively, in file order); what
    each outermost draw became goes into ``drawn`` by key path."""
    spec = _draw_spec(value)
    if spec is not None:
        _check(spec[0], spec[1], source, path)
        out = _resolve(pick(spec), source, path, pick)
        if drawn is not None:
            drawn[path] = out
        return out
    if isinstance(value, dict):
        return {
            k: _resolve(v, source, f"{path}.{k}" if path else k, pick, drawn)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_resolve(v, source, f"{path}[{i}]", pick, drawn) for i, v in enumerate(value)]
    return value


__all__ = [
    "DRAWS",
    "PREFIX",
    "Family",
    "FamilyError",
    "family_of",
    "is_family",
    "load_family",
    "names",
]
