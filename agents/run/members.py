"""The ensemble's members chosen by the validation rule, for ``make ppo-model SEED=k``.

The rule that chose the shipped ``ppo-general``'s members (``docs/study-benchmark.md``, Lever 7),
as code: each fine-tuning seed's checkpoints (20k, 40k and 60k steps) are played on a validation
suite (``val``, seeds 0-4), each deferring to Chiron as the ensemble will (``DEFER``), beside
``static`` and ``chiron``; a seed's member is its checkpoint with the most scenarios whose mean
reward is above Chiron's at an interactive attainment no more than one point below it, then the
best mean score (``(reward - static) / (chiron - static)`` over the scenarios where Chiron is above
static). Ties go to the earlier checkpoint.

``python -m agents.run.members RUN_DIR [--suite val] [--seeds 0-4]`` prints the chosen zips, one
per line, and writes the grid and the choice to ``RUN_DIR/selection/``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from agents.run.benchmark import scores
from agents.run.evaluate import evaluate, read_rows
from agents.run.suite import load_suite
from chiron_gym.cli.args import parse_seeds

STEPS = (20_000, 40_000, 60_000)
DEFER = "defer_above=38.3;defer_feature=interactive.arrival_peak_5m"
ATTAINMENT_SLACK = 0.01  # one point of interactive attainment


def candidates(run_dir: Path, steps: tuple[int, ...] = STEPS) -> dict[str, list[Path]]:
    """Each fine-tuning seed's checkpoints (``RUN_DIR/seed*/checkpoints/ppo_<steps>_steps.zip``)."""
    out: dict[str, list[Path]] = {}
    for seed_dir in sorted(run_dir.glob("seed*")):
        zips = [seed_dir / "checkpoints" / f"ppo_{s}_steps.zip" for s in steps]
        missing = [z for z in zips if not z.is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0]}: a checkpoint the selection needs is missing")
        out[seed_dir.name] = zips
    if not out:
        raise FileNotFoundError(f"{run_dir}: no seed*/ folders of fine-tuning runs")
    return out


def rank_key(agent: str, cells: list[dict[str, Any]]) -> tuple[int, float]:
    """(scenarios above Chiron within the attainment slack, mean score) of ``agent``."""
    mine = {c["scenario"]: c for c in cells if c["agent"] == agent}
    chiron = {c["scenario"]: c for c in cells if c["agent"] == "chiron"}
    wins = sum(
        1
        for s, c in mine.items()
        if c["reward"] > chiron[s]["reward"]
        and c["interactive_attainment"] >= chiron[s]["interactive_attainment"] - ATTAINMENT_SLACK
    )
    defined = [c["score"] for c in mine.values() if c["chiron_above_static"]]
    mean = sum(defined) / len(defined) if defined else -math.inf
    return wins, mean


def select(run_dir: Path, suite: str = "val", seeds: list[int] | None = None) -> list[Path]:
    """Each seed's member by the rule of the module docstring; the grid kept under
    ``run_dir/selection`` (an interrupted selection resumes there)."""
    found = candidates(run_dir)
    spec = {z: f"ppo:{z}[{DEFER}]" for zips in found.values() for z in zips}
    s = load_suite(suite)
    out = run_dir / "selection"
    out.mkdir(parents=True, exist_ok=True)
    evaluate(
        ["static", "chiron", *spec.values()],
        [spec_ for _, spec_ in s.scenarios],
        seeds if seeds is not None else list(range(5)),
        out,
        plots=False,
        tensorboard=False,
        executor="auto",
        resume=True,
    )
    cells = scores(read_rows(out / "results.csv"), {spec_: name for name, spec_ in s.scenarios})
    chosen: list[Path] = []
    record: dict[str, Any] = {}
    for seed_name, zips in found.items():
        keys = {z: rank_key(spec[z], cells) for z in zips}
        best = max(zips, key=lambda z: (keys[z], -zips.index(z)))
        chosen.append(best)
        record[seed_name] = {"chosen": str(best), "keys": {str(z): keys[z] for z in zips}}
    (out / "members.json").write_text(json.dumps(record, indent=1) + "\n")
    return chosen


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m agents.run.members", description=__doc__)
    p.add_argument("run_dir", type=Path, help="the fine-tuning runs' folder (seed*/checkpoints)")
    p.add_argument("--suite", default="val")
    p.add_argument("--seeds", default="0-4")
    a = p.parse_args(argv)
    chosen = select(a.run_dir, a.suite, parse_seeds(a.seeds))
    sys.stdout.write("".join(f"{z}\n" for z in chosen))


if __name__ == "__main__":
    main()
