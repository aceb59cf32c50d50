"""The ``chiron`` parser and entry point: ``build_parser`` adds each command's parser (they
stand beside their handlers in the command modules) in order, and ``main`` runs the chosen
handler and is the one place errors are reported."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from chiron_gym import __version__
from chiron_gym.cli import bench, calibration, evaluate, simulate, train
from chiron_gym.cli.args import Subparsers
from chiron_gym.config import InputError

DESCRIPTION = "The ``chiron`` command: the composition root, and the only module that prints."


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``chiron``."""
    parser = argparse.ArgumentParser(prog="chiron", description=DESCRIPTION)
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
    simulate.simulate_parser(sub)
    evaluate.evaluate_parser(sub)
    evaluate.benchmark_parser(sub)
    evaluate.dataset_parser(sub)
    train.ensemble_parser(sub)
    train.support_parser(sub)
    _group(
        sub,
        "train",
        "train a learned autoscaler",
        "train_command",
        train.train_ppo_parser,
        train.train_bc_parser,
        train.train_offline_parser,
    )
    _group(sub, "tune", "hyperparameter search with Ray Tune", "what", train.tune_ppo_parser)
    bench.bench_parser(sub)
    bench.sweep_parser(sub)
    bench.fidelity_parser(sub)
    simulate.scenarios_parser(sub)
    _group(
        sub,
        "trace",
        "real request traces",
        "trace_command",
        calibration.trace_stats_parser,
        calibration.trace_tables_parser,
    )
    _group(
        sub,
        "profile",
        "calibrated performance profiles",
        "profile_command",
        calibration.profile_fit_parser,
        calibration.profile_build_parser,
        calibration.profile_list_parser,
        calibration.profile_measure_parser,
        calibration.profile_compare_parser,
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
        os.environ["CHIRON_TRUST_MODELS"] = "1"  # read by agents/model_files.py, workers too
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
