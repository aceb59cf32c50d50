"""``chiron train ppo`` and ``chiron tune ppo`` (learned autoscalers), ``chiron ensemble``
(trained models voting) and ``chiron support`` (what a family's draws show a policy).

Agents, SB3 and Ray are imported inside the handlers (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chiron_gym.cli.args import Subparsers, emit, executor_args, parse_seeds, positive_int, seed_arg
from chiron_gym.config import InputError


def train_ppo_parser(tsub: Subparsers) -> None:
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
        "--vec-env",
        choices=("subproc", "inline", "shards"),
        default="subproc",
        help="subproc: a process per environment (n-envs > 1); inline: all in this process "
        "(Gymnasium's vector API, envs/vector.py; B10 in docs/performance.md); shards: split "
        "over one process per core, each stepping its share inline (B13); the same episodes "
        "as inline",
    )
    ppo.add_argument(
        "--action-mode",
        choices=("full", "global", "local", "target"),
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
        help="training only: pay the policy (residual or standalone) its reward minus Chiron's "
        "on the same draw, in units of Chiron's mean per-step reward there (agents/residual.py)",
    )
    ppo.add_argument(
        "--init",
        help="start from this trained model (its folder or .zip): weights, optimiser state and "
        "observation statistics (fine-tuning; agents/train/ppo.py warm_start)",
    )
    ppo.add_argument("--eval-freq", type=int, default=10_000, help="steps between evaluations")
    executor_args(ppo)
    ppo.set_defaults(func=_cmd_train_ppo)


def _cmd_train_ppo(args: argparse.Namespace) -> int:
    from agents.run.evaluate import check_out
    from agents.train.ppo import train, train_seeds

    kwargs: dict[str, Any] = {
        "n_envs": args.n_envs,
        "vec_env": args.vec_env,
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
    check_out(out)
    if args.seeds is None:
        if args.executor != "auto" or args.ray_address:
            raise InputError("--executor and --ray-address go with --seeds")
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


def train_bc_parser(tsub: Subparsers) -> None:
    bc = tsub.add_parser(
        "bc",
        help="behaviour cloning from chiron dataset --action-space target into a PPO model "
        "(play it as ppo:OUT; fine-tune it with chiron train ppo --init OUT)",
    )
    bc.add_argument("datasets", help="comma-separated dataset ids, e.g. chiron/train-chiron-v0")
    bc.add_argument("--data", default="runs/datasets", help="Minari's dataset folder")
    bc.add_argument("--out", default="runs/bc")
    bc.add_argument(
        "--algo", choices=("maskable-ppo", "ppo"), default="maskable-ppo", help="the model's class"
    )
    bc.add_argument("--epochs", type=positive_int, default=30)
    bc.add_argument("--seed", type=seed_arg, default=0)
    bc.add_argument(
        "--held-out",
        type=float,
        default=0.1,
        help="share of each dataset's last episodes kept out of training to score the clone",
    )
    bc.add_argument(
        "--hyperparams",
        help="zoo-format YAML for the network (default agents/hyperparams/<algo>.yml)",
    )
    bc.set_defaults(func=_cmd_train_bc)


def _cmd_train_bc(args: argparse.Namespace) -> int:
    from agents.run.evaluate import check_out
    from agents.train.bc import clone

    out = Path(args.out)
    check_out(out)
    result = clone(
        Path(args.data),
        [d for d in args.datasets.split(",") if d],
        out,
        algo=args.algo,
        epochs=args.epochs,
        seed=args.seed,
        held_out=args.held_out,
        hyperparams=Path(args.hyperparams) if args.hyperparams else None,
    )
    print(f"{out}: cloned from {result.steps} steps in {result.wall_s:.1f} s")
    on = "held-out" if result.held_out_episodes else "training (none held out)"
    for i, (a, m) in enumerate(zip(result.accuracy, result.majority, strict=True)):
        print(f"  action[{i}]: {on} accuracy {a:.3f} (majority class {m:.3f})")
    print(
        f"play it: chiron evaluate --agents ppo:{out} ...; fine-tune it: chiron train ppo "
        f"--init {out} --action-mode target --algo {args.algo} ..."
    )
    return 0


def train_offline_parser(tsub: Subparsers) -> None:
    off = tsub.add_parser(
        "offline",
        help="offline RL (d3rlpy: IQL, CQL, TD3+BC) from chiron dataset --action-space target, "
        "in .venv-offline (make offline-env); play it as ppo:OUT",
    )
    off.add_argument("datasets", help="comma-separated dataset ids, e.g. chiron/train-chiron-v0")
    off.add_argument("--data", default="runs/datasets", help="Minari's dataset folder")
    off.add_argument("--out", default="runs/offline")
    off.add_argument("--algo", choices=("iql", "cql", "td3+bc"), default="iql")
    off.add_argument("--steps", type=positive_int, default=30_000, help="gradient steps")
    off.add_argument("--seed", type=seed_arg, default=0)
    off.add_argument("--hidden", default="256,256", help="hidden widths of every network")
    off.add_argument("--batch-size", type=positive_int, default=256)
    off.add_argument(
        "--python", help="the offline environment's Python (default .venv-offline/bin/python)"
    )
    off.set_defaults(func=_cmd_train_offline)


def _cmd_train_offline(args: argparse.Namespace) -> int:
    from agents.run.evaluate import check_out
    from agents.train.offline import train_offline

    out = Path(args.out)
    check_out(out)
    try:
        hidden = tuple(int(h) for h in args.hidden.split(",") if h)
    except ValueError:
        raise InputError(f"--hidden {args.hidden!r}: expected widths such as 256,256") from None
    result = train_offline(
        Path(args.data),
        [d for d in args.datasets.split(",") if d],
        out,
        algo=args.algo,
        steps=args.steps,
        seed=args.seed,
        hidden=hidden,
        batch_size=args.batch_size,
        python=Path(args.python) if args.python else None,
    )
    cover = result.coverage
    print(
        f"{out}: {args.algo} on {result.steps} steps ({cover['episodes']} episodes) "
        f"in {result.wall_s:.1f} s"
    )
    seen = ", ".join(f"{h['seen']}/{h['choices']}" for h in cover["heads"])
    print(
        f"  coverage: choices seen per head {seen}; {cover['distinct_actions']} distinct "
        f"actions; the action changed on {cover['share_of_decisions_changing_the_action']:.1%} "
        "of decisions"
    )
    print(f"play it: chiron evaluate --agents chiron,ppo:{out} ...")
    return 0


def tune_ppo_parser(tsub: Subparsers) -> None:
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
    from agents.train.tune import METRIC, tune_ppo

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


def ensemble_parser(sub: Subparsers) -> None:
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
        raise InputError("--defer-feature needs --defer-above (its threshold)")
    defer = None
    if args.defer_above is not None:
        defer = Deferral(args.defer_above, args.defer_feature or DEFER_FEATURE)
    path = write_ensemble(
        args.members, args.out, args.selected_by, defer, args.defer_source, args.combine
    )
    print(
        f"{path}: an ensemble of {len(args.members)} models voting by {args.combine}; "
        f"play it as ppo:{path}"
    )
    return 0


def support_parser(sub: Subparsers) -> None:
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


def _quantiles(text: str) -> list[float]:
    """``--quantiles``: comma-separated numbers in [0, 1]."""
    try:
        qs = [float(q) for q in text.split(",")]
    except ValueError:
        raise InputError(f"--quantiles: expected numbers, got {text!r}") from None
    if not qs or any(not 0.0 <= q <= 1.0 for q in qs):
        raise InputError(f"--quantiles: each in [0, 1], got {text!r}")
    return qs


def _cmd_support(args: argparse.Namespace) -> int:
    from agents.defer import DEFER_FEATURE
    from agents.run.support import support_quantile

    out = support_quantile(
        args.scenario,
        args.seeds,
        _quantiles(args.quantiles),
        args.feature or DEFER_FEATURE,
        progress=not args.json,
    )
    emit(
        out,
        args.json,
        lambda: "\n".join(
            [
                f"{out['feature']} over {out['decisions']} decisions of {len(out['seeds'])} draws "
                f"of {out['scenario']}:",
                *(f"  q{q}: {v:.4g}" for q, v in out["quantiles"].items()),
                f"  max: {out['max']:.4g}",
            ]
        ),
    )
    return 0
