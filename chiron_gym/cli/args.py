"""What the command modules share: argparse types (numbers, seeds, lists), the ``--executor``
flags, a check of name lists, and the two small printers several commands use."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from chiron_gym.config import InputError

# what ``add_subparsers`` returns (argparse's class is not generic at run time: a string alias)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def number(low: float, *, strict: bool, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number ``> low`` (``>= low`` unless ``strict``), ``<= high``."""
    rel = ">" if strict else ">="
    expected = f"a number {rel} {low:g}" + (f" and <= {high:g}" if high is not None else "")

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
        ok = math.isfinite(v) and (v > low if strict else v >= low)
        if not ok or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return v

    return parse


def integer(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {low}")
        return v

    return parse


positive_int = integer(1)
seed_arg = integer(0)  # a seed: numpy's seeds are non-negative

MAX_SEEDS = 10_000  # more seeds than any study runs; a typo (0-1000000000) is refused


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` or ``"0,2,7"`` (or a mix) to a list of seeds: each >= 0, ranges not empty, no
    seed twice, at most ``MAX_SEEDS``."""
    seeds: list[int] = []
    expected = "expected a range like 0-4 or a list like 0,1,2 of seeds >= 0"
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"seeds {text!r}: {expected}") from None
        if a < 0:
            raise argparse.ArgumentTypeError(f"seeds {text!r}: {expected}")
        if b < a:
            raise argparse.ArgumentTypeError(f"seeds {text!r}: the range {part.strip()} is empty")
        if len(seeds) + b - a + 1 > MAX_SEEDS:
            raise argparse.ArgumentTypeError(
                f"seeds {text!r}: more than {MAX_SEEDS:,} seeds; expected a few (e.g. 0-4)"
            )
        seeds += range(a, b + 1)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds {text!r}: a seed is listed twice")
    return seeds


def int_list(text: str) -> list[int]:
    """An argparse type: comma-separated integers >= 1 (``1,8,32,128``)."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers, e.g. 1,8,32,128") from None
    if not out or any(x < 1 for x in out):
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 1, e.g. 1,8,32,128")
    return out


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the names of a comma-separated flag."""
    return [s.strip() for s in text.split(",") if s.strip()]


def unique(kind: str, names: list[str]) -> list[str]:
    """``names`` (agents, scenarios) with a clear error if one is listed twice."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--{kind}: {', '.join(twice)} listed twice (each runs once per seed)")
    if not names:
        raise InputError(f"--{kind}: expected at least one name")
    return names


def executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--ray-address``: where a command's runs execute."""
    p.add_argument(
        "--executor",
        choices=("auto", "local", "process", "ray"),
        default="auto",
        help="where runs execute: auto (a process pool when more than one core is free), "
        "local (this process), process, ray",
    )
    p.add_argument(
        "--ray-address",
        help="an existing Ray cluster (e.g. ray://head:10001 or auto); default: $RAY_ADDRESS, "
        "else a local Ray started for the run",
    )


def fmt(x: float | None, unit: str = "", scale: float = 1.0) -> str:
    """A figure to three significant digits (``-`` for none)."""
    return "-" if x is None else f"{x * scale:.3g}{unit}"


def emit(obj: Any, as_json: bool, text: Callable[[], str]) -> None:
    """Print ``obj`` as one JSON line (``--json``: keys sorted), else the lines ``text()`` makes."""
    print(json.dumps(obj, sort_keys=True) if as_json else text())


def print_paths(paths: list[Path]) -> int:
    """Print each written file, one per line (what the file-writing commands report)."""
    for p in paths:
        print(p)
    return 0
