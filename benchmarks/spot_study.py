"""Spot capacity, by agent (issue 42): ``python -m benchmarks.spot_study [--seeds 0-9]
[--out DIR]``.

Each agent plays ``spot-mix`` (the mixed and batch pools on spot: 0.35x the price, reclaimed
hourly with a 2-minute notice, one start in five made to wait ~5 minutes) and its on-demand twin
(the same file with every pool on demand: written to ``--out``), with the same traffic seeds.
Prints, per agent and scenario, the interactive and batch attainment and the cost (GPU-hours at
each pool's price), then spot minus on-demand per agent, seed by seed, with 95 % bootstrap
intervals (``agents/run/stats.py``). ``spot-hedge`` needs a spot pool, so it plays ``spot-mix``
only. About a minute per ten seeds.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

import scenarios
from agents.run.episode import run_episode
from agents.run.stats import paired_interval, verdict
from benchmarks.studies import seeds_and_out, write_rows

AGENTS = ("chiron", "static", "llumnix", "queue-threshold", "spot-hedge")
SPOT_KEYS = re.compile(
    r"^(gpu_price|reclaims_per_hour|reclaim_notice_s|stockout_probability|stockout_wait_s)\b"
)


def on_demand_twin(out: Path) -> Path:
    """``spot-mix`` with every pool on demand (its spot keys removed), written to ``out``."""
    text = scenarios.path("spot-mix").read_text()
    kept = [line for line in text.splitlines() if not SPOT_KEYS.match(line)]
    path = out / "spot-mix-on-demand.toml"
    path.write_text(
        "# spot-mix with every pool on demand (benchmarks/spot_study.py)\n" + "\n".join(kept) + "\n"
    )
    return path


def cost(row: dict[str, Any]) -> float:
    """GPU-hours at each pool's price (the reward's cost term over its weight, 1,000 by default)."""
    return -float(row["reward_gpu_cost"]) / 1000.0


def run(seeds: list[int], out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    twin = str(on_demand_twin(out))
    jobs = [
        (a, s, seed)
        for s in ("spot-mix", twin)
        for a in AGENTS
        if not (a == "spot-hedge" and s == twin)
        for seed in seeds
    ]
    rows = []
    for agent, scenario, seed in tqdm(jobs, desc="episodes", file=sys.stderr):
        r = run_episode(agent, scenario, seed).row
        rows.append(
            {
                "agent": agent,
                "scenario": "spot-mix" if scenario == "spot-mix" else "on-demand",
                "seed": seed,
                "interactive_attainment": r["interactive_attainment"],
                "batch_attainment": r["batch_attainment"],
                "gpu_hours": r["gpu_hours"],
                "cost": cost(r),
                "reward": r["reward"],
            }
        )
    write_rows(rows, out)
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["agent"], r["scenario"]), {})[int(r["seed"])] = r
    lines = [
        "| agent | pools | interactive att. | batch att. | GPU-h | cost (priced GPU-h) | reward |",
        "|---|---|---|---|---|---|---|",
    ]
    for (agent, sc), seeds in sorted(by.items()):
        n = len(seeds)
        mean = {k: sum(float(r[k]) for r in seeds.values()) / n for k in list(rows[0])[3:]}
        lines.append(
            f"| {agent} | {sc} | {mean['interactive_attainment']:.3f} | "
            f"{mean['batch_attainment']:.3f} | {mean['gpu_hours']:.2f} | {mean['cost']:.2f} | "
            f"{mean['reward']:,.0f} |"
        )
    lines += [
        "",
        "| agent: spot minus on-demand | interactive att. | cost | reward |",
        "|---|---|---|---|",
    ]
    for agent in AGENTS:
        spot, od = by.get((agent, "spot-mix"), {}), by.get((agent, "on-demand"), {})
        common = sorted(set(spot) & set(od))
        if not common:
            continue
        cells = []
        for key, better, fmt in (
            ("interactive_attainment", True, "{:+.3f}"),
            ("cost", False, "{:+.2f}"),
            ("reward", True, "{:+,.0f}"),
        ):
            m, lo, hi = paired_interval(
                [float(spot[s][key]) for s in common], [float(od[s][key]) for s in common]
            )
            word = verdict(m, lo, hi, better)
            cells.append(f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}] {word}")
        lines.append(f"| {agent} ({len(common)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    seeds, out = seeds_and_out("spot_study", __doc__, argv)
    rows = run(seeds, out)
    print(report(rows))
    print(f"\nrows: {out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
