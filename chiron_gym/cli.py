"""The ``chiron`` command: the composition root, and the only module that prints."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from chiron_gym import __version__
from chiron_gym.scenario import ScenarioError, load


def _fmt(x: float | None, unit: str = "", scale: float = 1.0) -> str:
    return "-" if x is None else f"{x * scale:.3g}{unit}"


def _print_summary(s: dict[str, Any]) -> None:
    print(
        f"scenario {s['scenario']}  seed {s['seed']}  simulated {s['sim_seconds']:.0f} s "
        f"in {s['wall_seconds']:.2f} s wall  GPU-hours {s['gpu_hours']:.2f}"
    )
    header = f"{'class':<12}{'arrived':>9}{'met':>9}{'late':>8}{'rejected':>9}{'pending':>9}"
    header += f"{'attain':>8}"
    header += f"{'TTFT p50/p95/p99':>24}{'ITL p50/p95/p99 (ms)':>24}"
    print(header)
    for name, c in s["classes"].items():
        att = "-" if c["attainment"] is None else f"{100 * c['attainment']:.1f}%"
        ttft = "/".join(_fmt(c[f"ttft_p{p}_s"], "s") for p in (50, 95, 99))
        itl = "/".join(_fmt(c[f"itl_p{p}_s"], "", 1e3) for p in (50, 95, 99))
        print(
            f"{name:<12}{c['arrived']:>9}{c['met']:>9}{c['late']:>8}{c['rejected']:>9}"
            f"{c['pending']:>9}{att:>8}{ttft:>24}{itl:>24}"
        )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from chiron_gym.episode import simulate

    scenario = load(args.scenario)
    summary = simulate(scenario, args.seed, fast_forward=not args.per_iteration)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``chiron``."""
    parser = argparse.ArgumentParser(prog="chiron", description=__doc__)
    parser.add_argument("--version", action="version", version=f"chiron-gym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run one episode with a fixed policy and print a summary")
    sim.add_argument("--scenario", default="default", help="bundled scenario name or a .toml path")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument(
        "--per-iteration",
        action="store_true",
        help="reference mode: one event per engine iteration (no fast-forward)",
    )
    sim.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chiron`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ScenarioError as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
