"""The sealed test suite's ledger (``benchmarks/suites/test-ledger.csv``, ``docs/benchmark.md``).

Every run of the bundled ``test`` suite appends one line: date, stop, commit, command, the suite
and its SHA-256, the agents and seeds it ran, the purpose its caller gave (required: a run of the
sealed suite without a stated purpose is refused before any episode), the candidates that met
the suite for the first time (agents no earlier line of the same suite names), and the SHA-256
of its ``scores.csv``. Models are chosen on validation suites; the ledger is how a reader counts
the candidates that have met the test suite.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from pathlib import Path

from agents.run.suite import SUITES, BenchmarkError, Suite

LEDGER = SUITES / "test-ledger.csv"
SEALED = SUITES / "test.toml"
FIELDS = (
    "date_utc",
    "stop",
    "commit",
    "command",
    "suite",
    "suite_sha256",
    "agents",
    "seeds",
    "purpose",
    "new_candidates",
    "scores_csv_sha256",
)


def is_sealed(suite: Suite) -> bool:
    return suite.path.resolve() == SEALED.resolve()


def check_purpose(suite: Suite, purpose: str) -> None:
    """Refuse a run of the sealed suite without a purpose (before anything runs)."""
    if is_sealed(suite) and not purpose.strip():
        raise BenchmarkError(
            "the test suite is sealed: say why it runs (chiron benchmark --purpose TEXT); the "
            f"run is appended to {LEDGER.name}. Choose models on the validation suites (val, "
            "val2, loops)"
        )


def read(path: Path = LEDGER) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def candidates(rows: list[dict[str, str]]) -> list[str]:
    """Every agent any line names, in the order they first met the suite."""
    seen: dict[str, None] = {}
    for r in rows:
        for a in (r.get("agents") or "").split(";"):
            if a:
                seen.setdefault(a, None)
    return list(seen)


UNFINISHED = "unfinished (no scores.csv)"


def append(
    *,
    commit: str,
    command: str,
    suite: Suite,
    agents: list[str],
    seeds: str,
    purpose: str,
    path: Path = LEDGER,
) -> dict[str, str]:
    """Append a run's line before any episode runs (``CHIRON_STOP`` names the stop, when set):
    a run that fails or is stopped still met the suite. ``finish`` adds its ``scores.csv``.
    Candidates are new when no earlier line of the same suite (by its SHA-256) names them."""
    rows = read(path)
    known = set(candidates([r for r in rows if r.get("suite_sha256") == suite.sha256]))
    line = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "stop": os.environ.get("CHIRON_STOP", ""),
        "commit": commit,
        "command": command,
        "suite": suite.name,
        "suite_sha256": suite.sha256,
        "agents": ";".join(agents),
        "seeds": seeds,
        "purpose": purpose.strip(),
        "new_candidates": ";".join(a for a in agents if a not in known) or "none",
        "scores_csv_sha256": UNFINISHED,
    }
    _write([*rows, line], path)
    return line


def finish(line: dict[str, str], scores: Path, path: Path = LEDGER) -> dict[str, str]:
    """Record the finished run's ``scores.csv`` SHA-256 on its line (the last one like it)."""
    rows = read(path)
    for r in reversed(rows):
        if r == line:
            r["scores_csv_sha256"] = hashlib.sha256(scores.read_bytes()).hexdigest()
            _write(rows, path)
            return r
    raise ValueError(f"{path}: the run's line is no longer there ({line['date_utc']})")


def _write(rows: list[dict[str, str]], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


__all__ = [
    "FIELDS",
    "LEDGER",
    "UNFINISHED",
    "append",
    "candidates",
    "check_purpose",
    "finish",
    "is_sealed",
    "read",
]
