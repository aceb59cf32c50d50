"""``chiron evaluate`` (agents on the same traffic), ``chiron benchmark`` (the benchmark
protocol on a suite) and ``chiron dataset`` (offline datasets of the heuristic agents).

Agents are imported inside the handlers (tests/test_layering.py): ``chiron simulate`` does not
pay for them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from chiron_gym.cli.args import Subparsers, comma_list, executor_args, parse_seeds, seed_arg, unique
from chiron_gym.config import InputError


def evaluate_parser(sub: Subparsers) -> None:
    ev = sub.add_parser("evaluate", help="compare agents on the same traffic")
    ev.add_argument("--agents", default="chiron,static,llumnix", help="comma-separated names")
    ev.add_argument(
        "--scenarios",
        default="default",
        help="comma-separated names, paths or families (family:train: a draw per seed)",
    )
    ev.add_argument("--seeds", type=parse_seeds, default=[0], help="e.g. 0-4 or 0,1,2")
    ev.add_argument("--out", default="runs/evaluate", help="output folder")
    ev.add_argument("--json", action="store_true", help="print the table's rows as JSON lines")
    ev.add_argument("--no-plots", action="store_true")
    ev.add_argument("--no-tensorboard", action="store_true")
    ev.add_argument(
        "--resume",
        action="store_true",
        help="keep the episodes already in OUT/results.csv and run only the others",
    )
    ev.add_argument(
        "--backend",
        choices=("sim", "vllm"),
        default="sim",
        help="sim (default), or vllm: real vLLM servers that each episode starts, scales and "
        "stops (docs/real-backend.md); episodes then run one at a time, in this process",
    )
    ev.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --backend vllm, how to start a server (repeatable): model=PATH (required), "
        "python, max_num_seqs, max_model_len, port_base, startup_timeout_s, log_dir, "
        "served_name, token_id",
    )
    ev.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="POOL=URL",
        help="with --backend vllm, a running server to adopt as one of POOL's first instances "
        "(repeatable); more are started from --server-option",
    )
    executor_args(ev)
    ev.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from agents import check_specs
    from agents.run.evaluate import EvaluationFailed, check_out, evaluate
    from chiron_gym.backends.options import backend_kwargs
    from chiron_gym.scenario import check_spec

    agents_ = unique("agents", comma_list(args.agents))
    check_specs(agents_)
    scenarios_ = unique("scenarios", comma_list(args.scenarios))
    for s in scenarios_:
        check_spec(s)  # fail early, with the scenario's own message
    real = backend_kwargs(args.backend, args.server_option, args.endpoint, args.executor)
    out = Path(args.out)
    check_out(out)
    failed: EvaluationFailed | None = None
    try:
        summary = evaluate(
            agents_,
            scenarios_,
            args.seeds,
            out,
            plots=not args.no_plots,
            tensorboard=not args.no_tensorboard,
            progress=not args.json,
            env_kwargs=real or None,
            executor="local" if real else args.executor,
            ray_address=args.ray_address,
            resume=args.resume,
        )
    except EvaluationFailed as e:  # (Ctrl-C, EvaluationInterrupted: main reports what was kept)
        failed, summary = e, e.summary
    _print_evaluation(args, out, summary)
    if failed:
        print(f"chiron: {failed}\nthe other episodes' results are in {out}", file=sys.stderr)
        return 1
    return 0


def _print_evaluation(args: argparse.Namespace, out: Path, summary: list[dict[str, Any]]) -> None:
    if args.json:
        for row in summary:
            print(json.dumps(row, sort_keys=True))
        return
    print((out / "results.md").read_text())
    print(f"results: {out / 'results.csv'}, {out / 'results.json'}, {out / 'results.md'}")
    if not args.no_plots:
        print(f"plots: {out / 'plots'}")
    if not args.no_tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out / 'tb'}")


def benchmark_parser(sub: Subparsers) -> None:
    b = sub.add_parser(
        "benchmark",
        help="the benchmark protocol: agents on a fixed suite, scored static = 0, Chiron = 1",
    )
    b.add_argument(
        "--agents",
        default="chiron,static",
        help="comma-separated (static, chiron, random and the planner always run: they define "
        "the scores)",
    )
    b.add_argument(
        "--suite", default="test", help="test (sealed: needs --purpose), val, train, or a file"
    )
    b.add_argument(
        "--purpose",
        default="",
        help="why the sealed test suite runs: appended with the run to its ledger",
    )
    b.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the hindsight planner and random (no ceiling-normalised scores)",
    )
    b.add_argument(
        "--seeds",
        type=parse_seeds,
        default=list(range(20)),
        help="e.g. 0-19 (the protocol's minimum for a claim is 20)",
    )
    b.add_argument(
        "--resume",
        action="store_true",
        help="keep the episodes already in OUT/episodes/results.csv and run only the others",
    )
    b.add_argument(
        "--training-runs",
        action="append",
        default=[],
        metavar="NAME=SPEC,SPEC,...",
        help="independent training runs of one pipeline (e.g. make ppo-model SEED=k's models), "
        "each played and pooled as NAME: its intervals are over training runs and seeds",
    )
    b.add_argument("--out", default="runs/benchmark", help="output folder")
    b.add_argument("--json", action="store_true", help="print benchmark.json")
    b.add_argument("--no-tensorboard", action="store_true")
    executor_args(b)
    b.set_defaults(func=_cmd_benchmark)


def training_runs_arg(values: list[str]) -> dict[str, list[str]]:
    """``--training-runs NAME=SPEC,SPEC,...`` (repeatable) as ``{NAME: [SPEC, ...]}``."""
    out: dict[str, list[str]] = {}
    for v in values:
        name, eq, specs = v.partition("=")
        members = comma_list(specs)
        if not eq or not re.fullmatch(r"[\w.-]+", name.strip()) or len(members) < 2:
            raise InputError(
                f"--training-runs {v!r}: expected NAME=SPEC,SPEC,... (NAME of letters, digits, "
                "'.', '-', '_') with at least two runs"
            )
        if name.strip() in out:
            raise InputError(f"--training-runs: {name.strip()!r} is named twice")
        out[name.strip()] = unique("--training-runs", members)
    return out


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from agents import check_specs
    from agents.run.benchmark import benchmark
    from agents.run.evaluate import EvaluationFailed, check_out

    agents_ = unique("agents", comma_list(args.agents))
    groups = training_runs_arg(args.training_runs)
    check_specs([*agents_, *(m for ms in groups.values() for m in ms)])
    check_out(Path(args.out))
    try:
        benchmark(
            agents_,
            args.suite,
            args.seeds,
            Path(args.out),
            executor=args.executor,
            ray_address=args.ray_address,
            progress=not args.json,
            tensorboard=not args.no_tensorboard,
            resume=args.resume,
            ceiling=not args.no_ceiling,
            purpose=args.purpose,
            training_runs=groups,
        )
    except EvaluationFailed as e:
        print(f"chiron: {e}\nthe finished episodes are in {args.out}/episodes", file=sys.stderr)
        return 1
    out = Path(args.out)
    if args.json:
        print((out / "benchmark.json").read_text(), end="")
        return 0
    print((out / "leaderboard.md").read_text())
    print(
        f"files: {out}/leaderboard.md, benchmark.json, scores.csv, pareto.png, profiles.png, "
        "episodes/"
    )
    if not args.no_tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out / 'tb'}")
    return 0


def dataset_parser(sub: Subparsers) -> None:
    d = sub.add_parser(
        "dataset", help="offline datasets (Minari) of the heuristic agents' trajectories"
    )
    d.add_argument(
        "--agents",
        default="chiron",
        help="comma-separated; one dataset each (agents, ppo:PATH, or the planning references "
        "planner, planner-forecast, static-best: planned, then replayed)",
    )
    src = d.add_mutually_exclusive_group()
    src.add_argument("--scenarios", help="comma-separated names or paths (default: default)")
    src.add_argument("--family", help="a family (train, or a file): each episode a new draw")
    d.add_argument("--episodes", type=int, default=10, help="per scenario (or of the family)")
    d.add_argument("--seed", type=seed_arg, default=0, help="the first episode's traffic seed")
    d.add_argument("--horizon-s", type=float, help="shorter episodes than the scenario's")
    d.add_argument("--out", default="runs/datasets", help="Minari's dataset folder")
    d.add_argument(
        "--action-space",
        choices=("own", "target"),
        default="own",
        help="own: each agent's action space; target: every agent's decisions as the target "
        "mode's counts and cap choices (datasets of several agents can then be mixed)",
    )
    d.set_defaults(func=_cmd_dataset)


def _cmd_dataset(args: argparse.Namespace) -> int:
    from agents import check_specs
    from agents.run.dataset import collect

    agents_ = comma_list(args.agents)
    check_specs(agents_)
    if args.family:
        fam = args.family
        sources = [fam if fam.startswith("family:") or fam.endswith(".toml") else f"family:{fam}"]
    else:
        sources = comma_list(args.scenarios or "default")
    results = collect(
        agents_,
        sources,
        args.episodes,
        Path(args.out),
        seed=args.seed,
        horizon_s=args.horizon_s,
        action_space=args.action_space,
    )
    for r in results:
        print(f"{r.dataset_id}: {r.episodes} episodes, {r.steps} steps in {r.path}")
    print(
        f'load one: MINARI_DATASETS_PATH={args.out} python -c "import minari; '
        f"print(minari.load_dataset('{results[0].dataset_id}'))\""
    )
    return 0
