"""The best fixed allocation in hindsight: static pools of every size on a grid, and their front.

An autoscaler that spends more GPU-hours than the cheapest fixed allocation reaching the same
attainment saves nothing on that traffic. ``fixed_grid`` runs ``static`` on copies of a scenario
whose pools start at every combination of the given instance counts (the same traffic seeds for
each); ``pareto`` keeps the allocations that no other beats on both interactive attainment and
GPU-hours; ``cheapest`` is the fixed allocation an autoscaler is compared with: the fewest
GPU-hours reaching a given interactive and batch attainment (mean over the seeds). The fixed
allocation is chosen knowing the traffic (in hindsight): it is a reference, not an agent.

    python -m agents.run.fixed SCENARIO --interactive 2-16 --mixed 0,2 --batch 0-4 --seeds 0-2
"""

from __future__ import annotations

import argparse
import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from agents.run.episode import episode_row
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.scenario import Scenario, load
from chiron_gym.sim.request import POOL_NAMES

KEYS = ("interactive_attainment", "batch_attainment", "gpu_hours", "reward")


def with_counts(scenario: Scenario, counts: dict[str, int]) -> Scenario:
    """``scenario`` whose pools start (and stay, under ``static``) at ``counts`` instances."""
    pools = []
    for spec in scenario.cluster.pools:
        n = counts.get(POOL_NAMES[int(spec.pool)], spec.initial_instances)
        pools.append(
            replace(
                spec,
                initial_instances=n,
                min_instances=min(n, spec.min_instances),
                max_instances=max(n, spec.max_instances),
            )
        )
    return replace(scenario, cluster=replace(scenario.cluster, pools=tuple(pools)))


def _run(task: tuple[str, dict[str, int], int]) -> dict[str, Any]:
    name, counts, seed = task
    scenario = with_counts(load(name), counts)
    env = AutoscaleEnv(scenario, action_mode="full")
    try:
        row = episode_row(env, "static", name, seed).row
    finally:
        env.close()
    return {"counts": counts, "seed": seed, **{k: row[k] for k in KEYS}}


def fixed_grid(
    scenario: str, grid: dict[str, list[int]], seeds: list[int], workers: int = 2
) -> list[dict[str, Any]]:
    """``static`` at every combination of ``grid``'s counts; per allocation, the seed means."""
    exists = {POOL_NAMES[int(p.pool)] for p in load(scenario).cluster.pools}
    names = [n for n in POOL_NAMES if n in grid and n in exists]
    combos = [
        dict(zip(names, c, strict=True)) for c in itertools.product(*(grid[n] for n in names))
    ]
    tasks = [(scenario, c, s) for c in combos for s in seeds]
    with ProcessPoolExecutor(workers) as ex:
        runs = list(ex.map(_run, tasks))
    out = []
    for c in combos:
        mine = [r for r in runs if r["counts"] == c]
        out.append({"counts": c, **{k: float(np.mean([r[k] for r in mine])) for k in KEYS}})
    return out


def pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The allocations no other beats on both interactive attainment and GPU-hours."""
    front: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: (r["gpu_hours"], -r["interactive_attainment"])):
        if not front or r["interactive_attainment"] > front[-1]["interactive_attainment"]:
            front.append(r)
    return front


def cheapest(
    rows: list[dict[str, Any]], interactive: float, batch: float = 0.99
) -> dict[str, Any] | None:
    """The fewest GPU-hours reaching ``interactive`` and ``batch`` attainment, if any does."""
    ok = [
        r
        for r in rows
        if r["interactive_attainment"] >= interactive and r["batch_attainment"] >= batch
    ]
    return min(ok, key=lambda r: r["gpu_hours"]) if ok else None


def _ints(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.run.fixed", description=__doc__)
    ap.add_argument("scenario")
    for pool in POOL_NAMES:
        ap.add_argument(f"--{pool}", type=_ints, help=f"{pool} instance counts, e.g. 2-16 or 0,2")
    ap.add_argument("--seeds", type=_ints, default=[0])
    ap.add_argument("--attainment", type=float, default=None, help="print the cheapest reaching it")
    args = ap.parse_args(argv)
    base = load(args.scenario)
    grid = {
        POOL_NAMES[int(p.pool)]: getattr(args, POOL_NAMES[int(p.pool)]) or [p.initial_instances]
        for p in base.cluster.pools
    }
    rows = fixed_grid(args.scenario, grid, args.seeds)
    answer: dict[str, Any] = {"scenario": args.scenario, "seeds": args.seeds, "front": pareto(rows)}
    if args.attainment is not None:
        answer["cheapest"] = cheapest(rows, args.attainment)
    print(json.dumps(answer, indent=1))  # noqa: T201 (the command's answer)
    return 0


__all__ = ["cheapest", "fixed_grid", "pareto", "with_counts"]

if __name__ == "__main__":
    raise SystemExit(main())
