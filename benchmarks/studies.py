"""What the seeded studies (``benchmarks/pd_planners.py``, ``benchmarks/spot_study.py``) share:
their command line (``--seeds``, ``--out``) and their rows file."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from chiron_gym.cli.args import parse_seeds


def seeds_and_out(name: str, doc: str | None, argv: list[str] | None) -> tuple[list[int], Path]:
    """``python -m benchmarks.NAME [--seeds 0-9] [--out runs/NAME]``, parsed."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc)
    ap.add_argument("--seeds", default="0-9", help="traffic seeds, e.g. 0-9")
    ap.add_argument("--out", type=Path, default=Path("runs") / name)
    args = ap.parse_args(argv)
    return parse_seeds(args.seeds), args.out


def write_rows(rows: list[dict[str, Any]], out: Path) -> Path:
    """``rows`` as ``out/results.csv`` (columns in the first row's order); its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path
