"""``make tuned``: rewrite the shipped tables of the tuned agents (``agents/tuned/*.json``).

Every bundled scenario is tuned for ``llumnix-tuned`` and ``chiron-tuned`` by the same procedure
and budget (``agents/tuning.py``), on seeds no table of ``docs/results.md`` uses; each entry
records the commit it was tuned at.

    python -m agents.run.tuned_tables [--agents llumnix-tuned,chiron-tuned] [--scenarios a,b]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import scenarios
from agents.chiron_tuned import TABLE as CHIRON_TABLE
from agents.llumnix_tuned import TABLE as LLUMNIX_TABLE
from chiron_gym.scenario import load

TABLES = {"llumnix-tuned": LLUMNIX_TABLE, "chiron-tuned": CHIRON_TABLE}
REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.run.tuned_tables", description=__doc__)
    ap.add_argument("--agents", default=",".join(TABLES))
    ap.add_argument("--scenarios", default=",".join(scenarios.names()))
    args = ap.parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    chosen = [load(n) for n in args.scenarios.split(",")]
    for agent in args.agents.split(","):
        if agent not in TABLES:
            raise SystemExit(f"unknown tuned agent {agent!r}: one of {', '.join(TABLES)}")
        out = TABLES[agent].write(chosen, commit)
        summary = {
            n: {k: e[k] for k in e if k not in ("grid", "description")}
            for n, e in out["scenarios"].items()
            if n in {s.name for s in chosen}
        }
        print(json.dumps({agent: summary}, indent=1))  # noqa: T201 (the command's answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
