"""``chiron simulate`` (one episode with a fixed policy, its summary) and ``chiron scenarios``
(the bundled scenarios)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from chiron_gym.cli.args import Subparsers, fmt, number, seed_arg
from chiron_gym.scenario import load, load_any


def simulate_parser(sub: Subparsers) -> None:
    sim = sub.add_parser("simulate", help="run one episode with a fixed policy and print a summary")
    sim.add_argument(
        "--scenario",
        default="default",
        help="bundled scenario name, a .toml path, or a family (family:train: the draw of --seed)",
    )
    sim.add_argument("--seed", type=seed_arg, default=0)
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument(
        "--per-iteration",
        action="store_true",
        help="reference mode: one event per engine iteration (no fast-forward)",
    )
    sim.add_argument("--trace", help="replay this trace file instead of the scenario's traffic")
    sim.add_argument("--trace-format", choices=("azure", "mooncake", "burstgpt", "generic"))
    sim.add_argument("--columns", help="generic CSV: time=COL,prompt=COL,output=COL")
    positive = number(0.0, strict=True)
    sim.add_argument("--time-scale", type=positive, default=1.0, help="stretch trace time")
    sim.add_argument("--rate-scale", type=positive, default=1.0, help="thin (<1) or replicate (>1)")
    sim.add_argument(
        "--batch-fraction",
        type=number(0.0, strict=False, high=1.0),
        default=0.0,
        help="fraction of trace requests made batch (random, seeded)",
    )
    sim.add_argument("--batch-deadline-s", type=positive, default=3600.0)
    sim.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from chiron_gym.backends.simulate import simulate

    scenario = load_any(args.scenario, args.seed)
    if args.trace:
        from chiron_gym.scenario import TraceSpec, data_path
        from chiron_gym.workload.trace import ClassAssignment, ColumnMap

        spec = TraceSpec(
            path=data_path(args.trace, Path.cwd()),  # data:REL under ../shared/data, as scenarios
            fmt=args.trace_format,
            columns=ColumnMap.parse(args.columns) if args.columns else None,
            start_s=0.0,
            end_s=None,
            time_scale=args.time_scale,
            rate_scale=args.rate_scale,
            classes=ClassAssignment(batch_fraction=args.batch_fraction),
        )
        scenario = scenario.with_trace(spec, deadline_s=args.batch_deadline_s)
    summary = simulate(scenario, args.seed, fast_forward=not args.per_iteration)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        _print_summary(summary)
    return 0


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
        ttft = "/".join(fmt(c[f"ttft_p{p}_s"], "s") for p in (50, 95, 99))
        itl = "/".join(fmt(c[f"itl_p{p}_s"], "", 1e3) for p in (50, 95, 99))
        print(
            f"{name:<12}{c['arrived']:>9}{c['met']:>9}{c['late']:>8}{c['rejected']:>9}"
            f"{c['pending']:>9}{att:>8}{ttft:>24}{itl:>24}"
        )
    if s.get("prefix_hit_rate"):
        rates = ", ".join(f"{p} {100 * v:.1f}%" for p, v in s["prefix_hit_rate"].items())
        print(f"prefix cache hit rate (prompt tokens): {rates}")


def scenarios_parser(sub: Subparsers) -> None:
    scn = sub.add_parser("scenarios", help="list the bundled scenarios")
    scn.add_argument("--json", action="store_true")
    scn.set_defaults(func=_cmd_scenarios)


def _cmd_scenarios(args: argparse.Namespace) -> int:
    import scenarios as bundled

    rows: list[dict[str, Any]] = []
    for name in bundled.names():
        sc = load(name)
        rows.append(
            {
                "name": name,
                "description": sc.description,
                "profile": sc.profile,
                "horizon_s": sc.horizon_s,
            }
        )
    if args.json:
        print(json.dumps(rows, sort_keys=True))
    else:
        width = max(len(str(r["name"])) for r in rows) + 2
        for r in rows:
            print(f"{r['name']:<{width}}{r['description']}")
        print(
            "disaggregated (chiron_gym/Autoscale-v1; profiles from ../shared/data): "
            + ", ".join(bundled.disaggregated_names())
        )
    return 0
