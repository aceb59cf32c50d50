"""``chiron bench`` (speed benchmarks), ``chiron sweep`` (one instance under closed-loop load)
and ``chiron fidelity`` (the simulator against real vLLM servers)."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

from chiron_gym.cli.args import Subparsers, emit, int_list, seed_arg
from chiron_gym.config import InputError


def bench_parser(sub: Subparsers) -> None:
    bench = sub.add_parser("bench", help="speed benchmarks (figures, not tests)")
    bench.add_argument(
        "name",
        nargs="?",
        default="all",
        help="B1..B13 (train = B6, B10 and B13), all (default), or env (every scenario)",
    )
    bench.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    bench.add_argument("--max-steps", type=int, default=300)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_cmd_bench)


def _env_row(row: dict[str, Any]) -> str:
    return (
        f"{row['scenario']:<20} {row['steps_per_s']:>8} steps/s  ({row['steps']} steps, "
        f"{row['sim_s_per_wall_s']} simulated s per wall s)"
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.env import env_bench
    from benchmarks.suite import NAMES, run_isolated

    if args.name == "env":
        rows = env_bench(args.scenario or None, max_steps=args.max_steps)
        for row in rows:
            emit(row, args.json, partial(_env_row, row))
        return 0
    alias = {"all": list(NAMES), "train": ["B6", "B10", "B13"]}
    names = alias.get(args.name, [args.name.upper()])
    if any(n not in NAMES for n in names):
        known = ", ".join((*NAMES, "all", "env", "train"))
        raise InputError(f"unknown benchmark {args.name!r}; known: {known}")
    failed = 0
    for n in names:
        row = run_isolated(n)
        failed += "error" in row
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            figures = {k: v for k, v in row.items() if k not in ("bench", "what", "machine")}
            print(f"{n}: {row.get('what', '')}  {figures}", flush=True)
    return 1 if failed else 0


def sweep_parser(sub: Subparsers) -> None:
    sw = sub.add_parser(
        "sweep",
        help="one instance under closed-loop load at several concurrencies (TTFT, TPOT, tok/s)",
        description="TTFT, TPOT and throughput of one instance against concurrency, as vllm "
        "bench serve --max-concurrency measures them (chiron_gym/sweep.py).",
    )
    where = sw.add_mutually_exclusive_group(required=True)
    where.add_argument("--profile", help="a shipped profile or a profile file")
    where.add_argument("--model", help="compose a profile: a registry name or a config.json")
    sw.add_argument("--gpu", choices=("a100", "h100"), help="with --model")
    sw.add_argument("--tp", type=int, default=1, help="with --model")
    sw.add_argument("--dtype", choices=("bf16", "fp8"), default="bf16", help="with --model")
    sw.add_argument("--kv-dtype", choices=("bf16", "fp8"), default="bf16", help="with --model")
    sw.add_argument("--concurrency", type=int_list, default=[1, 8, 32, 128])
    sw.add_argument("--isl", type=int, default=1024, help="prompt tokens per request")
    sw.add_argument("--osl", type=int, default=1024, help="output tokens per request")
    sw.add_argument("--requests-per-client", type=int, default=8, help="the first is a warm-up")
    sw.add_argument(
        "--like",
        choices=("chiron", "vllm-bench"),
        default="chiron",
        help="how requests are counted: chiron (steady state: the first wave per client is an "
        "unmeasured warm-up) or vllm-bench (as vllm bench serve --max-concurrency C "
        "--request-rate inf --num-prompts N counts: N requests, every one measured, the first "
        "burst of C included)",
    )
    sw.add_argument(
        "--num-prompts",
        type=int,
        help="with --like vllm-bench: requests per point (default 1000, vllm bench serve's)",
    )
    sw.add_argument(
        "--max-num-seqs", type=int, help="default: vllm serve's for the GPU (H100 1024, A100 256)"
    )
    sw.add_argument(
        "--max-num-batched-tokens",
        type=int,
        help="default: vllm serve's for the GPU (H100 8192, A100 2048)",
    )
    sw.add_argument(
        "--layout",
        default="1",
        help="instances: N aggregated, or XpYd (X prefill, Y decode: disaggregated)",
    )
    sw.add_argument("--link", choices=("rdma", "nvlink"), default="rdma", help="with XpYd")
    sw.add_argument("--out", help="folder for sweep.md/csv/json/png")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from chiron_gym.sweep import sweep, table, write

    if args.model and not args.gpu:
        print("chiron sweep: --model needs --gpu", file=sys.stderr)
        return 2
    if args.num_prompts is not None and args.like != "vllm-bench":
        print("chiron sweep: --num-prompts needs --like vllm-bench", file=sys.stderr)
        return 2
    num_prompts = (args.num_prompts or 1000) if args.like == "vllm-bench" else None
    profile: Any = args.profile or {
        "model": args.model,
        "gpu": args.gpu,
        "tp": args.tp,
        "dtype": args.dtype,
        "kv_dtype": args.kv_dtype,
    }
    try:
        points = sweep(
            profile,
            args.concurrency,
            isl=args.isl,
            osl=args.osl,
            requests_per_client=args.requests_per_client,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
            progress=not args.json,
            num_prompts=num_prompts,
            layout=args.layout,
            link=args.link,
        )
    except ValueError as e:  # an InputError too: this command names itself
        print(f"chiron sweep: {e}", file=sys.stderr)
        return 2
    label = args.profile or f"{args.model} on {args.gpu} x {args.tp} ({args.dtype})"
    title = f"{label}: isl {args.isl}, osl {args.osl}"
    if args.layout != "1":
        title += f", layout {args.layout}"
    if num_prompts is not None:
        title += f", counted as vllm bench serve ({num_prompts} prompts, all measured)"
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(p) for p in points]))
    else:
        print(title)
        print(table(points))
    if args.out:
        meta = {"command": " ".join(sys.argv), "profile": profile, "title": title}
        written = write(points, Path(args.out), title, meta)
        if not args.json:
            print("written: " + ", ".join(str(p) for p in written))
    return 0


def fidelity_parser(sub: Subparsers) -> None:
    fid = sub.add_parser("fidelity", help="the simulator against real vLLM servers")
    fid.add_argument("--scenario", required=True, help="bundled scenario name or a .toml path")
    fid.add_argument("--profile", required=True, help="profile name or .json path for the sim")
    fid.add_argument(
        "--endpoint", action="append", required=True, help="URL or pool=URL (repeatable)"
    )
    fid.add_argument("--seed", type=seed_arg, default=0)
    fid.add_argument("--drain-s", type=float, default=300.0, help="time allowed after the horizon")
    fid.add_argument("--out", help="also write the report (JSON) here")
    fid.add_argument("--json", action="store_true")
    fid.set_defaults(func=_cmd_fidelity)


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from chiron_gym.fidelity import fidelity, parse_endpoints
    from chiron_gym.scenario import load

    scenario = load(args.scenario)
    try:
        endpoints = parse_endpoints(args.endpoint, scenario)
    except ValueError as e:  # an InputError too: this command names itself
        print(f"chiron fidelity: {e}", file=sys.stderr)
        return 2
    rep = fidelity(scenario, args.seed, args.profile, endpoints, drain_s=args.drain_s)
    if args.out:
        Path(args.out).write_text(json.dumps(rep.to_json(), indent=1, sort_keys=True) + "\n")
    if args.json:
        print(json.dumps(rep.to_json(), sort_keys=True))
        return 0
    print(
        f"scenario {rep.scenario}  seed {rep.seed}  profile {rep.profile}  "
        f"real {rep.wall_s['real']:.0f} s, sim {rep.wall_s['sim']:.2f} s"
    )
    for name, c in rep.counts.items():
        print(
            f"{name}: {c['requests']} requests, finished sim {c['finished_sim']}, "
            f"real {c['finished_real']}, compared {c['compared']}"
        )
    print(rep.markdown())
    return 0
