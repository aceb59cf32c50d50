"""Planners of disaggregated serving compared over traffic seeds (issue 41): ``python -m
benchmarks.pd_planners [--seeds 0-9] [--out DIR]``.

Every agent plays the bundled disaggregated scenarios (``disaggregated/pd-*``) with each seed's
traffic, in ``chiron_gym/Autoscale-v1``, with its own source's defaults (nothing
tuned here), and ``chiron-tuned`` (Chiron's headroom and latency weight tuned per scenario on
traffic seed 1000, by ``agents/tuning.py``'s grid, the budget ``llumnix-tuned`` gets). Prints,
per scenario, the agents' means, Chiron minus each agent and static minus the two nearest it,
seed by seed with 95 % bootstrap intervals (``agents/run/stats.py``); writes the rows
(``results.csv``) and one attainment / GPU-hours figure per scenario to ``--out``. About a
minute per ten seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

import scenarios
from agents.run.episode import run_episode
from agents.run.results_tables import means, paired_table, pareto_figure
from benchmarks.studies import seeds_and_out, write_rows

# chiron-tuned: Chiron's two global parameters tuned per scenario on seed 1000 (agents/tuning.py)
AGENTS = ("chiron", "chiron-tuned", "dynamo-sla", "heteroscale", "static")
COLUMNS = ("agent", "scenario", "seed", "interactive_attainment", "gpu_hours", "reward")


def run(seeds: list[int], out: Path) -> list[dict[str, Any]]:
    names = [n for n in scenarios.disaggregated_names() if n.startswith("disaggregated/pd-")]
    jobs = [(a, s, seed) for s in names for a in AGENTS for seed in seeds]
    rows: list[dict[str, Any]] = []
    for agent, scenario, seed in tqdm(jobs, desc="episodes", file=sys.stderr):
        row = run_episode(agent, scenario, seed).row
        # ``results_tables`` reads these columns (this study has no batch class)
        rows.append({k: row[k] for k in (*COLUMNS, "batch_attainment", "reward_violation")})
    write_rows(rows, out)
    return rows


def report(rows: list[dict[str, Any]], out: Path) -> str:
    lines = []
    for sc in sorted({r["scenario"] for r in rows}):
        short = sc.split("/")[-1]
        lines.append(f"\n### {sc}\n")
        lines.append("| agent | interactive att. | GPU-h | reward |")
        lines.append("|---|---|---|---|")
        for agent, m in sorted(means(rows, sc).items(), key=lambda kv: -kv[1]["reward"]):
            lines.append(
                f"| {agent} | {m['interactive_attainment']:.3f} | {m['gpu_hours']:.2f} | "
                f"{m['reward']:,.0f} |"
            )
        lines.append("")
        lines.append(paired_table(rows, sc, "chiron", [a for a in AGENTS if a != "chiron"]))
        lines.append("")
        lines.append(paired_table(rows, sc, "static", ["chiron-tuned", "heteroscale"]))
        pareto_figure(rows, sc, out / f"pd_planners_{short}.png")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    seeds, out = seeds_and_out("pd_planners", __doc__, argv)
    rows = run(seeds, out)
    print(report(rows, out))
    print(f"\nrows: {out / 'results.csv'}; figures: {out}/pd_planners_*.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
