"""Benchmark suites: a suite is a fixed list of scenarios (``benchmarks/suites/<name>.toml``, or
a suite file), ``[[scenario]]`` entries with a ``name`` and a ``spec``.

``load_suite`` reads one (errors name the file and the entry); ``check_suite`` loads every
scenario it names and looks for the traces they replay, before a benchmark runs anything.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from chiron_gym.config import InputError
from chiron_gym.scenario import check_traces, load_any

SUITES = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"


class BenchmarkError(InputError):
    """A suite that cannot be read, or bad arguments."""


@dataclass(frozen=True)
class Suite:
    """A named, fixed list of scenarios: ``(name, spec)`` pairs."""

    name: str
    path: Path
    description: str
    scenarios: tuple[tuple[str, str], ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def suite_names() -> list[str]:
    """The bundled suites (``benchmarks/suites/*.toml``)."""
    return sorted(p.stem for p in SUITES.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """A bundled suite by name, or a suite file; errors name the file and the entry."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        if name_or_path not in suite_names():
            raise BenchmarkError(
                f"unknown suite {name_or_path!r}; known: {', '.join(suite_names())} "
                "(or a suite file)"
            )
        p = SUITES / f"{name_or_path}.toml"
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BenchmarkError(f"{p}: cannot read the suite: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise BenchmarkError(f"{p}: not valid TOML: {e}") from None
    entries = doc.get("scenario")
    if not isinstance(entries, list) or not entries:
        raise BenchmarkError(f"{p}: expected [[scenario]] entries with a name and a spec")
    out: list[tuple[str, str]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"name", "spec"}:
            raise BenchmarkError(f"{p}: scenario[{i}]: expected exactly the keys name and spec")
        name, spec = entry["name"], entry["spec"]
        if not isinstance(name, str) or not isinstance(spec, str) or not name or not spec:
            raise BenchmarkError(f"{p}: scenario[{i}]: name and spec must be non-empty strings")
        if name in {n for n, _ in out}:
            raise BenchmarkError(f"{p}: scenario[{i}]: name {name!r} is used twice")
        if spec.endswith(".toml"):  # a file, relative to the suite's folder
            spec = str((p.parent / spec).resolve())
        if spec in {s for _, s in out}:
            raise BenchmarkError(f"{p}: scenario[{i}]: spec {entry['spec']!r} is listed twice")
        out.append((name, spec))
    return Suite(p.stem, p.resolve(), str(doc.get("description", "")), tuple(out))


def check_suite(suite: Suite) -> None:
    """Load every scenario of ``suite`` (a family: its draw for seed 0) and look for the trace
    files it replays, before anything runs; ``BenchmarkError`` naming the suite's entry."""
    for name, spec in suite.scenarios:
        try:
            check_traces(load_any(spec, 0))
        except InputError as e:
            raise BenchmarkError(f"suite {suite.path}: scenario {name!r}: {e}") from None
