"""The ``chiron`` command: the composition root, and the only module that prints.

Each subcommand's parser (``_<command>_parser``) stands beside its handler (``_cmd_<command>``);
``build_parser`` adds them in order. One module of about 670 lines on purpose: it is the only one
allowed to print (ruff's T20) and to import ``agents`` (lazily: tests/test_layering.py), and it
imports every heavy module (torch, SB3, Ray, pandas) inside the handler that needs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chiron_gym import __version__
from chiron_gym.config import InputError
from chiron_gym.scenario import Scenario, load

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


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
    if s.get("prefix_hit_rate"):
        rates = ", ".join(f"{p} {100 * v:.1f}%" for p, v in s["prefix_hit_rate"].items())
        print(f"prefix cache hit rate (prompt tokens): {rates}")


# --------------------------------------------------------------------------------------- simulate


def _simulate_parser(sub: Subparsers) -> None:
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
    positive = _number(0.0, strict=True)
    sim.add_argument("--time-scale", type=positive, default=1.0, help="stretch trace time")
    sim.add_argument("--rate-scale", type=positive, default=1.0, help="thin (<1) or replicate (>1)")
    sim.add_argument(
        "--batch-fraction",
        type=_number(0.0, strict=False, high=1.0),
        default=0.0,
        help="fraction of trace requests made batch (random, seeded)",
    )
    sim.add_argument("--batch-deadline-s", type=positive, default=3600.0)
    sim.set_defaults(func=_cmd_simulate)


def _number(low: float, *, strict: bool, high: float | None = None) -> Callable[[str], float]:
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


def _integer(low: int) -> Callable[[str], int]:
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


positive_int = _integer(1)
seed_arg = _integer(0)  # a seed: numpy's seeds are non-negative


def _cmd_simulate(args: argparse.Namespace) -> int:
    from chiron_gym.backends.simulate import simulate

    scenario = load_any(args.scenario, args.seed)
    if args.trace:
        from pathlib import Path

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


# --------------------------------------------------------- evaluate, train, tune (agents, lazily)


def load_any(spec: str, seed: int) -> Scenario:
    """A scenario, or for a family (``family:NAME`` or a file with draws) its draw for ``seed``
    (what ``reset(seed=seed)`` runs)."""
    from chiron_gym.scenario.families import family_of

    fam = family_of(spec)
    return load(spec) if fam is None else fam.sample(seed)[0]


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


def _unique(kind: str, names: list[str]) -> list[str]:
    """``names`` (agents, scenarios) with a clear error if one is listed twice."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"--{kind}: {', '.join(twice)} listed twice (each runs once per seed)")
    if not names:
        raise InputError(f"--{kind}: expected at least one name")
    return names


def _executor_args(p: argparse.ArgumentParser) -> None:
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


def _evaluate_parser(sub: Subparsers) -> None:
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
    _executor_args(ev)
    ev.set_defaults(func=_cmd_evaluate)


def server_option_types() -> dict[str, type]:
    """The ``ServerConfig`` fields ``--server-option`` may set (the scalar ones), with their
    types; ``argv`` and ``env`` are set from Python."""
    from typing import get_type_hints

    from chiron_gym.backends.vllm_servers import ServerConfig

    scalar = {str: str, int: int, float: float, str | None: str}
    return {k: scalar[t] for k, t in get_type_hints(ServerConfig).items() if t in scalar}


def backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The env's ``backend``/``backend_options`` from ``--backend``, ``--server-option`` and
    ``--endpoint`` (``InputError`` naming the flag otherwise)."""
    from chiron_gym.sim.request import POOL_NAMES

    if args.backend == "sim":
        for flag, given in (("--server-option", args.server_option), ("--endpoint", args.endpoint)):
            if given:
                raise InputError(f"{flag}: only with --backend vllm")
        return {}
    if args.executor not in ("auto", "local"):
        raise InputError(
            f"--executor {args.executor}: --backend vllm runs episodes one at a time in this "
            "process (its servers hold ports and cores); use --executor local"
        )
    kinds = server_option_types()
    server: dict[str, Any] = {}
    for item in args.server_option:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in kinds:
            raise InputError(
                f"--server-option {item!r}: expected KEY=VALUE with KEY one of {', '.join(kinds)}"
            )
        kind = kinds[key]
        try:
            server[key] = kind(value)
        except ValueError:
            raise InputError(f"--server-option {key}={value!r}: expected {kind.__name__}") from None
        if kind is not str and not (isinstance(server[key], int | float) and server[key] > 0):
            raise InputError(f"--server-option {key}={value}: expected a positive number")
    endpoints: dict[str, list[str]] = {}
    for item in args.endpoint:
        pool, sep, url = item.partition("=")
        if not sep or pool not in POOL_NAMES or not url.startswith("http://"):
            raise InputError(
                f"--endpoint {item!r}: expected POOL=http://HOST:PORT with POOL one of "
                f"{', '.join(POOL_NAMES)}"
            )
        endpoints.setdefault(pool, []).append(url.rstrip("/"))
    if "model" not in server and not endpoints:
        raise InputError(
            "--backend vllm: give --server-option model=PATH (a model folder vLLM can load "
            "offline) to start servers, or --endpoint POOL=URL to adopt running ones"
        )
    for key in ("model", "python"):
        if key in server and not Path(server[key]).exists():
            raise InputError(f"--server-option {key}={server[key]}: no such file or folder")
    options: dict[str, Any] = {}
    if server:
        options["server"] = server
    if endpoints:
        options["endpoints"] = endpoints
    return {"backend": "vllm", "backend_options": options}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from agents.run.evaluate import EvaluationFailed, EvaluationInterrupted, check_out, evaluate
    from agents.run.executors import ExecutorError

    agents_ = _unique("agents", [a.strip() for a in args.agents.split(",") if a.strip()])
    code = _check_agents(agents_)
    if code:
        return code
    scenarios_ = _unique("scenarios", [s.strip() for s in args.scenarios.split(",") if s.strip()])
    for s in scenarios_:
        load_any(s, 0)  # fail early, with the scenario's own message
    real = backend_kwargs(args)
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
    except ExecutorError as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 2
    except EvaluationInterrupted as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 130
    except EvaluationFailed as e:
        failed, summary = e, e.summary
    code = _print_evaluation(args, out, summary)
    if failed:
        print(f"chiron: {failed}\nthe other episodes' results are in {out}", file=sys.stderr)
        return 1
    return code


def _print_evaluation(args: argparse.Namespace, out: Path, summary: list[dict[str, Any]]) -> int:
    if args.json:
        for row in summary:
            print(json.dumps(row, sort_keys=True))
        return 0
    print((out / "results.md").read_text())
    print(f"results: {out / 'results.csv'}, {out / 'results.json'}, {out / 'results.md'}")
    if not args.no_plots:
        print(f"plots: {out / 'plots'}")
    if not args.no_tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out / 'tb'}")
    return 0


def _benchmark_parser(sub: Subparsers) -> None:
    b = sub.add_parser(
        "benchmark",
        help="the benchmark protocol: agents on a fixed suite, scored static = 0, Chiron = 1",
    )
    b.add_argument(
        "--agents",
        default="chiron,static",
        help="comma-separated (static and chiron always run: they define the score)",
    )
    b.add_argument("--suite", default="test", help="test, train, or a suite file")
    b.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2, 3, 4], help="e.g. 0-4")
    b.add_argument(
        "--resume",
        action="store_true",
        help="keep the episodes already in OUT/episodes/results.csv and run only the others",
    )
    b.add_argument("--out", default="runs/benchmark", help="output folder")
    b.add_argument("--json", action="store_true", help="print benchmark.json")
    b.add_argument("--no-tensorboard", action="store_true")
    _executor_args(b)
    b.set_defaults(func=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from agents.run.benchmark import BenchmarkError, benchmark, load_suite
    from agents.run.evaluate import EvaluationFailed, check_out
    from agents.run.executors import ExecutorError

    agents_ = _unique("agents", [a.strip() for a in args.agents.split(",") if a.strip()])
    code = _check_agents(agents_)
    if code:
        return code
    check_out(Path(args.out))
    try:
        suite = load_suite(args.suite)
        for name, spec in suite.scenarios:  # fail early, naming the suite's entry
            try:
                sc = load_any(spec, 0)
            except InputError as e:
                print(f"chiron: suite {suite.path}: scenario {name!r}: {e}", file=sys.stderr)
                return 2
            for src in sc.sources:
                if src.trace is not None and not src.trace.path.is_file():
                    print(
                        f"chiron: suite {suite.path}: scenario {name!r}: trace "
                        f"{src.trace.path} not found (../shared/data beside the repository, or "
                        "set CHIRON_DATA)",
                        file=sys.stderr,
                    )
                    return 2
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
        )
    except (BenchmarkError, ExecutorError) as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 2
    except EvaluationFailed as e:
        print(f"chiron: {e}\nthe finished episodes are in {args.out}/episodes", file=sys.stderr)
        return 1
    out = Path(args.out)
    if args.json:
        print((out / "benchmark.json").read_text(), end="")
        return 0
    print((out / "leaderboard.md").read_text())
    print(f"files: {out}/leaderboard.md, benchmark.json, scores.csv, pareto.png, episodes/")
    if not args.no_tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out / 'tb'}")
    return 0


def _dataset_parser(sub: Subparsers) -> None:
    d = sub.add_parser(
        "dataset", help="offline datasets (Minari) of the heuristic agents' trajectories"
    )
    d.add_argument("--agents", default="chiron", help="comma-separated; one dataset each")
    src = d.add_mutually_exclusive_group()
    src.add_argument("--scenarios", help="comma-separated names or paths (default: default)")
    src.add_argument("--family", help="a family (train, or a file): each episode a new draw")
    d.add_argument("--episodes", type=int, default=10, help="per scenario (or of the family)")
    d.add_argument("--seed", type=seed_arg, default=0, help="the first episode's traffic seed")
    d.add_argument("--horizon-s", type=float, help="shorter episodes than the scenario's")
    d.add_argument("--out", default="runs/datasets", help="Minari's dataset folder")
    d.set_defaults(func=_cmd_dataset)


def _cmd_dataset(args: argparse.Namespace) -> int:
    from agents.run.dataset import DatasetError, collect

    agents_ = [a.strip() for a in args.agents.split(",") if a.strip()]
    code = _check_agents(agents_)
    if code:
        return code
    if args.family:
        fam = args.family
        sources = [fam if fam.startswith("family:") or fam.endswith(".toml") else f"family:{fam}"]
    else:
        sources = [s.strip() for s in (args.scenarios or "default").split(",") if s.strip()]
    try:
        results = collect(
            agents_,
            sources,
            args.episodes,
            Path(args.out),
            seed=args.seed,
            horizon_s=args.horizon_s,
        )
    except DatasetError as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.dataset_id}: {r.episodes} episodes, {r.steps} steps in {r.path}")
    print(
        f'load one: MINARI_DATASETS_PATH={args.out} python -c "import minari; '
        f"print(minari.load_dataset('{results[0].dataset_id}'))\""
    )
    return 0


def _check_agents(agents_: list[str]) -> int:
    """2 (after a message) when an agent spec is unknown or its model is missing, else 0."""
    from agents import names as agent_names

    for a in agents_:
        if a.startswith("ppo:"):
            from agents import split_ppo_spec

            try:
                path, options = split_ppo_spec(a)
            except ValueError as e:
                print(f"chiron: {e}", file=sys.stderr)
                return 2
            if not Path(path).exists():
                print(f"chiron: agent {a!r}: {path} does not exist", file=sys.stderr)
                return 2
            from agents.ensemble import check_combine, ensemble_record, model_class

            model_class(path).check(path)  # an InputError if it needs --trust-model
            record = ensemble_record(path)
            if "combine" in options:  # a vote: an ensemble's, by a rule its members can play
                problem = "combine applies to an ensemble folder only" if record is None else ""
                try:
                    check_combine(options["combine"], record and record.get("residual"))
                except ValueError as e:
                    problem = problem or f"combine = {e}"
                if problem:
                    print(f"chiron: agent {a!r}: {problem}", file=sys.stderr)
                    return 2
            if "defer_above" in options:  # a readable quantity, and a model with Chiron beneath
                from agents.defer import DEFER_FEATURE, Deferral, check_defer
                from agents.ppo import PPOAgent

                meta = record or PPOAgent.files(path)[2]
                defer = Deferral(
                    options["defer_above"], options.get("defer_feature", DEFER_FEATURE)
                )
                check_defer(defer, meta.get("residual"))  # InputError: exit 2, before any episode
        elif a not in agent_names():
            print(
                f"chiron: unknown agent {a!r}; known: {', '.join(agent_names())}", file=sys.stderr
            )
            return 2
    return 0


def _train_ppo_parser(tsub: Subparsers) -> None:
    ppo = tsub.add_parser("ppo", help="Stable-Baselines3 PPO on chiron_gym/Autoscale-v0")
    ppo.add_argument("--scenario", default="default", help="a scenario, or a family (family:train)")
    ppo.add_argument(
        "--timesteps", type=positive_int, default=None, help="default: the hyperparameter file"
    )
    ppo.add_argument("--seed", type=seed_arg, default=0)
    ppo.add_argument(
        "--seeds",
        type=parse_seeds,
        help="independent runs, one per seed (e.g. 0-4), into OUT/seed<k>; see --executor",
    )
    ppo.add_argument("--out", default="runs/ppo")
    ppo.add_argument("--n-envs", type=positive_int, default=1)
    ppo.add_argument(
        "--action-mode",
        choices=("full", "global", "local"),
        help="default: full (global with --residual)",
    )
    ppo.add_argument(
        "--algo",
        choices=("ppo", "maskable-ppo", "recurrent-ppo"),
        default="ppo",
        help="SB3's PPO, or sb3-contrib's MaskablePPO (action masks) or RecurrentPPO (LSTM)",
    )
    ppo.add_argument(
        "--hyperparams", help="zoo-format YAML (default agents/hyperparams/<algo>.yml)"
    )
    ppo.add_argument(
        "--residual",
        choices=("chiron",),
        help="learn a correction of Chiron's global loop (action mode global; agents/residual.py)",
    )
    ppo.add_argument(
        "--residual-step", type=int, default=1, help="the correction's range per pool, +-N"
    )
    ppo.add_argument(
        "--residual-penalty",
        type=float,
        default=0.0,
        help="training only: reward units charged per instance of correction per decision "
        "(default 0; 2.78 is one GPU for 10 s at the default weights)",
    )
    ppo.add_argument(
        "--observation-features",
        type=int,
        help="train on the observation's first N features (an earlier release's, docs/env.md; "
        "default all)",
    )
    ppo.add_argument(
        "--relative-reward",
        action="store_true",
        help="training only, with --residual: pay the policy its reward minus Chiron's on the "
        "same draw, in units of Chiron's mean per-step reward there (agents/residual.py)",
    )
    ppo.add_argument(
        "--init",
        help="start from this trained model (its folder or .zip): weights, optimiser state and "
        "observation statistics (fine-tuning; agents/train/ppo.py warm_start)",
    )
    ppo.add_argument("--eval-freq", type=int, default=10_000, help="steps between evaluations")
    _executor_args(ppo)
    ppo.set_defaults(func=_cmd_train_ppo)


def _cmd_train_ppo(args: argparse.Namespace) -> int:
    from agents.run.executors import ExecutorError
    from agents.train.ppo import TrainError, train, train_seeds

    kwargs: dict[str, Any] = {
        "n_envs": args.n_envs,
        "action_mode": args.action_mode or ("global" if args.residual else "full"),
        "hyperparams": Path(args.hyperparams) if args.hyperparams else None,
        "eval_freq": args.eval_freq,
        "algo": args.algo,
        "residual": args.residual,
        "residual_step": args.residual_step,
        "residual_penalty": args.residual_penalty,
        "observation_features": args.observation_features,
        "relative_reward": args.relative_reward,
        "init": Path(args.init).resolve() if args.init else None,
    }
    out = Path(args.out)
    from agents.run.evaluate import check_out

    check_out(out)
    try:
        if args.seeds is None:
            if args.executor != "auto" or args.ray_address:
                print("chiron: --executor and --ray-address go with --seeds", file=sys.stderr)
                return 2
            results = [train(args.scenario, args.timesteps, args.seed, out, **kwargs)]
            failures: list[dict[str, Any]] = []
        else:
            results, failures = train_seeds(
                args.scenario,
                args.timesteps,
                args.seeds,
                out,
                executor=args.executor,
                ray_address=args.ray_address,
                **kwargs,
            )
    except (TrainError, ExecutorError) as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 2
    for result in results:
        print(
            f"{result.out}: trained {result.timesteps} steps in {result.wall_s:.1f} s: "
            f"{result.steps_per_s:.1f} steps/s"
        )
    if results:
        print(
            f"model: <run>/model.zip (+ vecnormalize.pkl); TensorBoard: tensorboard --logdir {out}"
        )
        print(
            f"evaluate it: chiron evaluate --agents chiron,ppo:{results[0].out} "
            f"--scenarios {args.scenario}"
        )
    for f in failures:
        print(f"chiron: run failed: seed {f['seed']}: {f['error']}", file=sys.stderr)
    return 1 if failures else 0


def _tune_ppo_parser(tsub: Subparsers) -> None:
    tp = tsub.add_parser("ppo", help="Ray Tune over PPO's hyperparameters, best vs Chiron")
    tp.add_argument("--scenario", default="default")
    tp.add_argument("--trials", type=int, default=8, help="samples of the search space")
    tp.add_argument("--space", help="search space YAML (default agents/hyperparams/tune-ppo.yml)")
    tp.add_argument("--timesteps", type=int, default=None, help="per trial (default: ppo.yml)")
    tp.add_argument("--seed", type=seed_arg, default=0, help="training seed and sampler seed")
    tp.add_argument("--compare-seeds", type=parse_seeds, default=[0, 1, 2])
    tp.add_argument(
        "--hyperparams", help="base hyperparameters (default agents/hyperparams/ppo.yml)"
    )
    tp.add_argument("--out", default="runs/tune")
    tp.add_argument("--ray-address", help="an existing Ray cluster (default: a local Ray)")
    tp.add_argument(
        "--storage", help="Tune's storage_path (default OUT/ray; shared or s3:// on a cluster)"
    )
    tp.set_defaults(func=_cmd_tune_ppo)


def _cmd_tune_ppo(args: argparse.Namespace) -> int:
    from agents.run.executors import ExecutorError
    from agents.train.ppo import TrainError
    from agents.train.tune import METRIC, tune_ppo

    try:
        report = tune_ppo(
            args.scenario,
            args.trials,
            Path(args.out),
            space=Path(args.space) if args.space else None,
            timesteps=args.timesteps,
            seed=args.seed,
            compare_seeds=tuple(args.compare_seeds),
            hyperparams=Path(args.hyperparams) if args.hyperparams else None,
            ray_address=args.ray_address,
            storage=args.storage,
        )
    except (TrainError, ExecutorError) as e:
        print(f"chiron: {e}", file=sys.stderr)
        return 2
    best = report.best
    failed = [t for t in report.trials if "error" in t]
    print(f"{len(report.trials)} trials ({len(failed)} failed): {report.out / 'trials.csv'}")
    for t in failed:
        print(f"  trial {t['trial']} failed: {t['error']}")
    print(f"best trial {best['trial']}: {METRIC} {best[METRIC]:.1f}")
    for k, v in sorted(best["hyperparams"].items()):
        print(f"  {k}: {v}")
    print(f"model: {best['model']} (evaluate it as ppo:{best['model']})")
    print()
    print((report.out / "vs-chiron" / "results.md").read_text())
    return 0


# --------------------------------------------------------------------- bench, fidelity, scenarios


def _bench_parser(sub: Subparsers) -> None:
    bench = sub.add_parser("bench", help="speed benchmarks (figures, not tests)")
    bench.add_argument(
        "name",
        nargs="?",
        default="all",
        help="B1..B8 (train = B6), all (default), or env (every scenario)",
    )
    bench.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    bench.add_argument("--max-steps", type=int, default=300)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.env import env_bench
    from benchmarks.suite import NAMES, run_isolated

    if args.name == "env":
        rows = env_bench(args.scenario or None, max_steps=args.max_steps)
        for row in rows:
            if args.json:
                print(json.dumps(row, sort_keys=True))
            else:
                print(
                    f"{row['scenario']:<20} {row['steps_per_s']:>8} steps/s  ({row['steps']} "
                    f"steps, {row['sim_s_per_wall_s']} simulated s per wall s)"
                )
        return 0
    alias = {"all": list(NAMES), "train": ["B6"]}
    names = alias.get(args.name, [args.name.upper()])
    if any(n not in NAMES for n in names):
        known = ", ".join((*NAMES, "all", "env", "train"))
        print(f"chiron: unknown benchmark {args.name!r}; known: {known}", file=sys.stderr)
        return 2
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


def _int_list(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers, e.g. 1,8,32,128") from None
    if not out or any(x < 1 for x in out):
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers >= 1, e.g. 1,8,32,128")
    return out


def _sweep_parser(sub: Subparsers) -> None:
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
    sw.add_argument("--concurrency", type=_int_list, default=[1, 8, 32, 128])
    sw.add_argument("--isl", type=int, default=1024, help="prompt tokens per request")
    sw.add_argument("--osl", type=int, default=1024, help="output tokens per request")
    sw.add_argument("--requests-per-client", type=int, default=8, help="the first is a warm-up")
    sw.add_argument(
        "--max-num-seqs", type=int, help="default: vllm serve's for the GPU (H100 1024, A100 256)"
    )
    sw.add_argument(
        "--max-num-batched-tokens",
        type=int,
        help="default: vllm serve's for the GPU (H100 8192, A100 2048)",
    )
    sw.add_argument("--out", help="folder for sweep.md/csv/json/png")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from chiron_gym.sweep import sweep, table, write

    if args.model and not args.gpu:
        print("chiron sweep: --model needs --gpu", file=sys.stderr)
        return 2
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
        )
    except (InputError, ValueError) as e:
        print(f"chiron sweep: {e}", file=sys.stderr)
        return 2
    label = args.profile or f"{args.model} on {args.gpu} x {args.tp} ({args.dtype})"
    title = f"{label}: isl {args.isl}, osl {args.osl}"
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


def _fidelity_parser(sub: Subparsers) -> None:
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

    scenario = load(args.scenario)
    try:
        endpoints = parse_endpoints(args.endpoint, scenario)
    except ValueError as e:
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


def _scenarios_parser(sub: Subparsers) -> None:
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
    return 0


# ------------------------------------------------------------------------------------------ trace


def _trace_stats_parser(tsub: Subparsers) -> None:
    ts = tsub.add_parser("stats", help="requests, span, rate, burstiness and lengths of a trace")
    ts.add_argument("path")
    ts.add_argument("--format", choices=("azure", "mooncake", "burstgpt", "generic"))
    ts.add_argument("--columns", help="generic CSV: time=COL,prompt=COL,output=COL")
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=_cmd_trace_stats)


def _cmd_trace_stats(args: argparse.Namespace) -> int:
    from chiron_gym.scenario import data_path
    from chiron_gym.workload.trace import ColumnMap, read_trace, stats

    columns = ColumnMap.parse(args.columns) if args.columns else None
    fmt = args.format or ("generic" if columns else None)
    s = stats(read_trace(data_path(args.path, Path.cwd()), fmt, columns))  # data:REL too
    if args.json:
        print(json.dumps(s, sort_keys=True))
        return 0
    print(
        f"requests {s['requests']}  span {s['span_s']:.1f} s  mean rate "
        f"{_fmt(s['mean_rate_per_s'])} req/s  inter-arrival CV {_fmt(s['interarrival_cv'])}"
    )
    for name in ("prompt", "output"):
        c = s[f"{name}_tokens"]
        print(
            f"{name:<7} tokens: mean {_fmt(c['mean'])}  median {_fmt(c['median'])}  "
            f"p99 {_fmt(c['p99'])}"
        )
    if s.get("prefix_block_reuse") is not None:
        print(f"prefix blocks seen before in the trace: {100 * s['prefix_block_reuse']:.1f}%")
    return 0


def _trace_tables_parser(tsub: Subparsers) -> None:
    tt = tsub.add_parser("tables", help="derive the shipped length tables from real traces")
    tt.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    tt.add_argument("--out", required=True)
    tt.set_defaults(func=_cmd_trace_tables)


def _cmd_trace_tables(args: argparse.Namespace) -> int:
    from chiron_gym.workload.tables import derive

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in derive(Path(args.data)).items():
        (out / name).write_text(text)
        written.append(out / name)
    return _print_paths(written)


def _print_paths(paths: list[Path]) -> int:
    """Print each written file, one per line (what the file-writing commands report)."""
    for p in paths:
        print(p)
    return 0


# ---------------------------------------------------------------------------------------- profile


def _profile_fit_parser(psub: Subparsers) -> None:
    fit = psub.add_parser("fit", help="fit profiles from raw profiling data")
    fit.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    fit.add_argument("--out", required=True, help="folder to write <profile>.json into")
    fit.add_argument("--only", action="append", help="fit only this profile (repeatable)")
    fit.set_defaults(func=_cmd_profile_fit)


def _cmd_profile_fit(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.fit import write_all

    return _print_paths(write_all(Path(args.data), Path(args.out), args.only or None))


def _profile_build_parser(psub: Subparsers) -> None:
    b = psub.add_parser(
        "build",
        help="compose a profile for any dense model from the kernel tables (A100/H100)",
        description="Compose a profile from AIConfigurator's kernel tables and Vidur's tables: "
        "see chiron_gym/profiles/compose.py and docs/profiles.md.",
    )
    b.add_argument("--model", help="a config.json path, or a registry name (--list-models)")
    b.add_argument("--gpu", choices=("a100", "h100"))
    b.add_argument("--tp", type=int, default=1, help="tensor parallelism: 1, 2, 4 or 8")
    b.add_argument("--dtype", choices=("bf16", "fp8"), default="bf16", help="GEMM weights")
    b.add_argument("--kv-dtype", choices=("bf16", "fp8"), default="bf16", help="KV cache")
    b.add_argument("--out", help="the profile JSON to write (default: print a summary only)")
    b.add_argument(
        "--data", help="the shared data folder (default: $CHIRON_DATA or ../shared/data)"
    )
    b.add_argument("--list-models", action="store_true", help="the registry's models and sources")
    b.add_argument(
        "--check",
        action="store_true",
        help="compose the shipped model/GPU pairs and compare them with measurements (tables)",
    )
    b.set_defaults(func=_cmd_profile_build)


def _cmd_profile_build(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.compose import BuildSpec, build
    from chiron_gym.profiles.fit import dumps
    from chiron_gym.profiles.models import REGISTRY, resolve
    from chiron_gym.profiles.profile import ProfileError
    from chiron_gym.scenario import data_root

    if args.list_models:
        for key, m in REGISTRY.items():
            s = m.shape
            print(
                f"{key:<20}{s.layers:>4} layers {s.hidden:>6} hidden {s.heads:>3}/{s.kv_heads:<3}"
                f"heads {s.ffn:>6} ffn {s.vocab:>7} vocab  {m.source}"
            )
        return 0
    data = Path(args.data) if args.data else data_root()
    try:
        if args.check:
            from chiron_gym.profiles.compose_check import tables

            print(tables(data))
            return 0
        if not args.model or not args.gpu:
            print("chiron profile build: --model and --gpu are required", file=sys.stderr)
            return 2
        spec = BuildSpec(resolve(args.model), args.gpu, args.tp, args.dtype, args.kv_dtype)
        profile = build(spec, data)
    except ProfileError as e:
        print(f"chiron profile build: {e}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps(profile.to_document()))
    from chiron_gym.sim import BatchComposition

    pm = profile.perf_model()
    decode = pm.iteration_time_s(BatchComposition.with_decodes([], [], [1024] * 32))
    prefill = pm.iteration_time_s(BatchComposition.with_decodes([2048], [0], []))
    print(
        f"{profile.name}: {profile.model.name}, {profile.gpu_name} x {profile.tensor_parallel}; "
        f"KV {profile.kv.capacity_tokens:,} tokens; decode of 32 x 1,024 tokens "
        f"{decode * 1e3:.2f} ms, prefill of 2,048 tokens {prefill * 1e3:.1f} ms"
        + (f"; written to {args.out}" if args.out else "")
    )
    if args.out:
        print(f'use it: [instance] profile = "{args.out}" in a scenario')
    return 0


def _profile_list_parser(psub: Subparsers) -> None:
    lst = psub.add_parser("list", help="list the shipped profiles")
    lst.set_defaults(func=_cmd_profile_list)


def _cmd_profile_list(args: argparse.Namespace) -> int:
    from chiron_gym.profiles import load, names

    print(f"{'profile':<24}{'GPUs':>5}{'KV tokens':>11}{'cold start':>12}{'held-out MAPE':>15}")
    for n in names():
        p = load(n)
        print(
            f"{n:<24}{p.tensor_parallel:>5}{p.kv.capacity_tokens:>11}"
            f"{p.cold_start.median_s:>11.0f}s{p.mape_pct['pooled']:>14.2f}%"
        )
    return 0


def _profile_measure_parser(psub: Subparsers) -> None:
    mea = psub.add_parser("measure", help="calibrate a profile from a live vLLM endpoint")
    mea.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:8000")
    mea.add_argument("--out", required=True, help="the profile JSON to write")
    mea.add_argument("--name", help="profile name (default: the file's stem)")
    mea.add_argument(
        "--model-config", help="the model's config.json (default: from the served model's folder)"
    )
    mea.add_argument("--device-name", default="cpu", help="recorded as the profile's gpu.name")
    mea.add_argument("--cold-start-s", type=float, default=40.0, help="recorded cold start")
    mea.add_argument("--token-id", type=int, default=5, help="prompt token id (repeated)")
    mea.add_argument("--save-raw", help="also write the raw probe timings (JSON) here")
    mea.add_argument("--quick", action="store_true", help="a smaller probe plan (tests)")
    mea.set_defaults(func=_cmd_profile_measure)


def _cmd_profile_measure(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.measure import build_profile, model_config
    from chiron_gym.profiles.probe import MeasureError, ProbePlan, probe

    plan = ProbePlan.quick() if args.quick else ProbePlan()
    out = Path(args.out)
    name = args.name or out.stem
    try:
        m = probe(args.endpoint, plan, token_id=args.token_id)
        if args.save_raw:
            Path(args.save_raw).write_text(json.dumps(m.to_json(), indent=1) + "\n")
        config, source = model_config(m, args.model_config)
        doc = build_profile(
            m,
            name=name,
            config=config,
            config_source=source,
            gpu_name=args.device_name,
            cold_start_s=args.cold_start_s,
        )
    except MeasureError as e:
        print(f"chiron profile measure: {e}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    mape = doc["validation"]["mape_pct"]
    print(
        f"{out}: {len(m.decode)} decode samples, {len(m.prefill)} prefill probes in "
        f"{m.wall_s:.0f} s; held-out MAPE decode {mape['decode_iteration']:.1f}%, "
        f"prefill {mape['prefill_ttft']:.1f}%; KV {doc['kv']['capacity_tokens']} tokens"
    )
    print(f'use it: [instance] profile = "{out}" in a scenario, or chiron fidelity --profile')
    return 0


def _profile_compare_parser(psub: Subparsers) -> None:
    cmp_ = psub.add_parser("compare", help="compare profiles with end-to-end measurements")
    cmp_.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    cmp_.add_argument("--json", action="store_true")
    cmp_.set_defaults(func=_cmd_profile_compare)


def _cmd_profile_compare(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.compare import as_dicts, compare_all, comparison_table

    rows = compare_all(Path(args.data))
    print(json.dumps(as_dicts(rows), sort_keys=True) if args.json else comparison_table(rows))
    return 0


# ------------------------------------------------------------------------------------ entry point


def _ensemble_parser(sub: Subparsers) -> None:
    e = sub.add_parser(
        "ensemble",
        help="an ensemble of trained PPO models (several seeds vote; play it as ppo:OUT)",
    )
    e.add_argument("out", help="the ensemble folder to write (new or empty)")
    e.add_argument("members", nargs="+", help="training folders or checkpoint .zip files (odd)")
    e.add_argument("--selected-by", help="how the members were chosen (recorded in train.json)")
    e.add_argument(
        "--defer-above",
        type=float,
        metavar="RATE",
        help="play Chiron's own action while the interactive arrival rate over the last minute "
        "is above RATE req/s (residual models; read it off the training family with chiron "
        "support; docs/ppo.md)",
    )
    e.add_argument(
        "--defer-feature",
        help="what --defer-above reads (default interactive.arrival_rate_1m; also "
        "interactive.arrival_peak_5m, the busiest 10-s window's rate in the last 5 minutes)",
    )
    e.add_argument("--defer-source", help="where --defer-above came from (recorded)")
    e.add_argument(
        "--combine",
        default="median",
        help="the vote: median (default); quantile:Q, the members' action at rank "
        "round(Q (n - 1)) of n sorted (Q = 0.25 of five adds an instance when four want it); "
        "consensus:Q (residual models), a correction of Chiron only as far as all but "
        "round(Q (n - 1)) members on its side want it",
    )
    e.set_defaults(func=_cmd_ensemble)


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from agents.defer import DEFER_FEATURE, Deferral
    from agents.ensemble import write_ensemble

    if args.defer_feature and args.defer_above is None:
        print("chiron: --defer-feature needs --defer-above (its threshold)", file=sys.stderr)
        return 2
    defer = None
    if args.defer_above is not None:
        defer = Deferral(args.defer_above, args.defer_feature or DEFER_FEATURE)
    # InputError: exit 2
    path = write_ensemble(
        args.members, args.out, args.selected_by, defer, args.defer_source, args.combine
    )
    print(
        f"{path}: an ensemble of {len(args.members)} models voting by {args.combine}; "
        f"play it as ppo:{path}"
    )
    return 0


def _support_parser(sub: Subparsers) -> None:
    s = sub.add_parser(
        "support",
        help="quantiles of an observation feature over a scenario family's draws (what a "
        "policy trained on it has seen; the threshold of --defer-above)",
    )
    s.add_argument("scenario", help="a family (family:NAME or a .toml), one draw per seed")
    s.add_argument(
        "--seeds", type=parse_seeds, default="10000-10999", help="draws (default 10000-10999)"
    )
    s.add_argument(
        "--quantiles",
        default="0.9,0.99,0.999",
        help="comma-separated, in [0, 1] (default 0.9,0.99,0.999)",
    )
    s.add_argument(
        "--feature",
        default=None,
        help="a feature of docs/env.md's table (default interactive.arrival_rate_1m)",
    )
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_cmd_support)


def _cmd_support(args: argparse.Namespace) -> int:
    from agents.defer import DEFER_FEATURE, support_quantile

    try:
        qs = [float(q) for q in args.quantiles.split(",")]
    except ValueError:
        print(f"chiron: --quantiles: expected numbers, got {args.quantiles!r}", file=sys.stderr)
        return 2
    if not qs or any(not 0.0 <= q <= 1.0 for q in qs):
        print(f"chiron: --quantiles: each in [0, 1], got {args.quantiles!r}", file=sys.stderr)
        return 2
    out = support_quantile(
        args.scenario,
        args.seeds,
        qs,
        args.feature or DEFER_FEATURE,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(
            f"{out['feature']} over {out['decisions']} decisions of {len(out['seeds'])} draws "
            f"of {out['scenario']}:"
        )
        for q, v in out["quantiles"].items():
            print(f"  q{q}: {v:.4g}")
        print(f"  max: {out['max']:.4g}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``chiron``."""
    parser = argparse.ArgumentParser(prog="chiron", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"chiron-gym {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an input error")
    parser.add_argument(
        "--trust-model",
        action="store_true",
        help="load ppo:PATH models the plain Stable-Baselines3 way, which runs code pickled in "
        "their files (needed only for models whose files this tool cannot read without it; "
        "same as CHIRON_TRUST_MODELS=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _simulate_parser(sub)
    _evaluate_parser(sub)
    _benchmark_parser(sub)
    _dataset_parser(sub)
    _ensemble_parser(sub)
    _support_parser(sub)
    _group(sub, "train", "train a learned autoscaler", "train_command", _train_ppo_parser)
    _group(sub, "tune", "hyperparameter search with Ray Tune", "what", _tune_ppo_parser)
    _bench_parser(sub)
    _sweep_parser(sub)
    _fidelity_parser(sub)
    _scenarios_parser(sub)
    _group(
        sub,
        "trace",
        "real request traces",
        "trace_command",
        _trace_stats_parser,
        _trace_tables_parser,
    )
    _group(
        sub,
        "profile",
        "calibrated performance profiles",
        "profile_command",
        _profile_fit_parser,
        _profile_build_parser,
        _profile_list_parser,
        _profile_measure_parser,
        _profile_compare_parser,
    )
    return parser


def _group(
    sub: Subparsers, name: str, help: str, dest: str, *commands: Callable[[Subparsers], None]
) -> None:
    """A command of subcommands (``chiron profile fit``): ``commands`` add theirs."""
    group = sub.add_parser(name, help=help).add_subparsers(dest=dest, required=True)
    for add in commands:
        add(group)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chiron`` console script.

    One error path: bad input (``InputError``: a scenario, trace, profile, flag or path, whose
    message names the file, field or line and what was expected), a file that cannot be read or
    written, or an input that asks for more memory than the machine has, prints ``chiron: ...``
    and exits 2, without a traceback unless ``--debug`` (or ``CHIRON_DEBUG=1``); Ctrl-C exits 130.
    """
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("CHIRON_DEBUG") == "1"
    if args.trust_model:
        os.environ["CHIRON_TRUST_MODELS"] = "1"  # read by agents/train/model_files.py, workers too
    try:
        return int(args.func(args))
    except KeyboardInterrupt as e:  # an evaluation's says what it kept
        if debug:
            raise
        print(f"chiron: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except (InputError, OSError, MemoryError, UnicodeDecodeError) as e:
        if debug:
            raise
        print(f"chiron: {_message(e)}", file=sys.stderr)
        return 2


def _message(e: BaseException) -> str:
    """What went wrong, for the one line ``main`` prints."""
    if isinstance(e, MemoryError):
        return (
            "out of memory: the input asks for more than this machine holds (a count, rate or "
            "horizon far beyond a real workload?); --debug shows where"
        )
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e.reason} at byte {e.start}); --debug shows which"
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
