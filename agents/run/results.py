"""``make results``: every table and figure of ``docs/results.md``, regenerated.

Parts, each an ``evaluate`` grid on the process (or Ray) executor:

- ``loops``: the validation suite Chiron's rules were chosen on (``benchmarks/suites/loops.toml``):
  Chiron, the variants it was chosen against, its ablations, and the cheapest fixed allocation in
  hindsight (``agents/run/fixed.py``), 3 seeds;
- ``paper``: the scenarios closest to the Chiron paper (``large-70b``, ``chiron-paper``,
  ``chiron-paper-70b``, at vLLM's default engine settings), Chiron, its ablations, ``chiron-tuned``
  and every baseline, 5 seeds: the table, paired differences with 95 % bootstrap intervals, the
  attainment / GPU-hours plane, and the ranking as the price of a violation changes;
- ``others``: the other bundled mixed and interactive scenarios, the same agents and the shipped
  PPO model;
- ``sweep``: Chiron's sensitivity to the parameters of both loops, one figure per scenario.

Each table goes into ``docs/results.md`` between ``<!-- results:NAME -->`` markers, with the
commit, seeds and machine it was made on; figures go to ``docs/figures/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from agents.run.evaluate import evaluate, read_rows, typed_row
from agents.run.fixed import fixed_grid
from agents.run.reporting import markdown
from agents.run.results_tables import (
    fixed_lines,
    means,
    paired_table,
    pareto_figure,
    price_table,
)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "results.md"
FIGURES = REPO / "docs" / "figures"

CHIRON = ["chiron", "chiron-global-only", "chiron-local-only", "chiron-no-tbp", "chiron-tuned"]
BASELINES = [
    "static",
    "llumnix",
    "llumnix-tuned",
    "queue-threshold",
    "kv-target",
    "ray-serve",
    "dynamo-load",
]
PAPER_SCENARIOS = ["large-70b", "chiron-paper", "chiron-paper-70b"]
OTHER_SCENARIOS = ["mixed-diurnal", "batch-flood", "interactive-bursty", "default"]
OTHER_AGENTS = [*CHIRON, *BASELINES, "random", "ppo:agents/models/ppo-default"]
SWEEP_SCENARIOS = ["chiron-paper-70b", "large-70b", "mixed-diurnal", "interactive-bursty"]
# parameter -> values (the default marked in the figure); "bounds" sets upper and lower together.
# Global loop first, then the local loop's parameters.
SWEEP: dict[str, list[Any]] = {
    "headroom_instances": [0, 1, 2, 4],
    "down_hold_cold_starts": [1.0, 2.0, 4.0],
    "bounds": [(0.7, 0.3), (0.8, 0.4), (0.9, 0.6)],
    "latency_weight": [0.0, 0.7, 1.0, 1.4],
    "z": [0.0, 1.645, 3.0],
    "period_s": [1.0, 2.0, 5.0],
    "ewma_alpha": [0.3, 0.5, 0.8],
    "settle_s": [2.0, 6.0, 12.0],
    "occupancy_gain": [0.05, 0.1, 0.2],
    "grow_below": [0.8, 0.9, 0.95],
    "grow_reach": [0.0, 0.5, 0.75, 0.9],
    "double_below": [0.25, 0.5, 0.75],
}
DEFAULTS = {
    "headroom_instances": 0,
    "down_hold_cold_starts": 2.0,
    "bounds": (0.8, 0.4),
    "latency_weight": 1.0,
    "z": 1.645,
    "period_s": 2.0,
    "ewma_alpha": 0.5,
    "settle_s": 6.0,
    "occupancy_gain": 0.1,
    "grow_below": 0.9,
    "grow_reach": 0.75,
    "double_below": 0.5,
}
LOOPS = REPO / "benchmarks" / "suites" / "loops"
LOOP_SCENARIOS = [
    "lp-a100-8b-12",
    "lp-a100-8b-20",
    "lp-h100-70b-4",
    "lp-h100-70b-5",
]
# Chiron as chosen, and what it was chosen against (docs/results.md, "How the loops were chosen")
LOOP_AGENTS = [
    "chiron",
    "chiron[grow_reach=0]",
    "chiron[latency_weight=0]",
    "chiron[latency_weight=0;use_ttft=True]",
    "chiron-global-only",
    "chiron-local-only",
    "chiron-no-tbp",
    "static",
]
FIXED_GRID = {  # instance counts of the fixed allocations, per loops scenario's GPU
    "a100": {"interactive": list(range(3, 15)), "mixed": [0, 1, 2], "batch": [0, 1, 2]},
    "h100": {"interactive": list(range(2, 10)), "mixed": [0, 1, 2], "batch": [0, 1]},
}


def _spec(param: str, value: Any) -> str:
    if param == "bounds":
        return f"chiron[upper_utilisation={value[0]};lower_utilisation={value[1]}]"
    return f"chiron[{param}={value}]"


def provenance(seeds: list[int], executor: str) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "chiron_gym", "agents", "scenarios"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    span = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    note = " (with uncommitted changes)" if dirty else ""
    return (
        f"_Made by `make results` at commit `{commit}`{note}, seeds {span}, on {machine}, "
        f"{executor} executor._"
    )


def put(name: str, text: str) -> None:
    """Replace the block between ``<!-- results:name -->`` markers of ``docs/results.md``."""
    doc = DOC.read_text()
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        doc = pattern.sub(lambda _m: block, doc)
    else:
        doc = doc.rstrip() + f"\n\n{block}\n"
    DOC.write_text(doc)


def run_part(
    name: str,
    agents: list[str],
    scenarios: list[str],
    seeds: list[int],
    out: Path,
    executor: str,
    comparisons: bool = False,
) -> list[dict[str, Any]]:
    summary = evaluate(agents, scenarios, seeds, out / name, tensorboard=False, executor=executor)
    for sc in scenarios:
        src = out / name / "plots" / f"compare_{sc}.png"
        if src.is_file():
            FIGURES.mkdir(parents=True, exist_ok=True)
            (FIGURES / f"compare_{sc}.png").write_bytes(src.read_bytes())
        ep = out / name / "plots" / sc / "chiron_seed0.png"
        if ep.is_file():
            (FIGURES / f"episode_chiron_{sc}.png").write_bytes(ep.read_bytes())
    text = provenance(seeds, executor) + "\n\n" + markdown(summary)
    if comparisons:
        text += "\n\n" + paper_comparisons(out / name, scenarios)
    put(name, text)
    return summary


def paper_comparisons(out: Path, scenarios: list[str]) -> str:
    """Per scenario: full Chiron minus each other agent, seed by seed with 95 % intervals; the
    attainment / GPU-hours plane; the ranking as the price of a violation changes."""
    rows = [typed_row(r) for r in read_rows(out / "results.csv")]
    parts = []
    for sc in scenarios:
        agents = sorted({r["agent"] for r in rows if r["scenario"] == sc} - {"chiron"})
        order = [a for a in [*CHIRON, "static"] if a in agents]
        order += [a for a in agents if a not in order]
        best = pareto_figure(rows, sc, FIGURES / f"pareto_{sc}.png")
        m = means(rows, sc)
        parts.append(
            f"#### {sc}: paired differences, the front, the price of a violation\n\n"
            + paired_table(rows, sc, "chiron", order)
            + "\n\nThe front (no agent beats these on both interactive attainment and GPU-hours): "
            + ", ".join(
                f"`{a}` ({m[a]['interactive_attainment']:.3f}, {m[a]['gpu_hours']:.1f} GPU-h)"
                for a in best
            )
            + f". ![{sc}](figures/pareto_{sc}.png)\n\n"
            + price_table(rows, sc)
        )
    return "\n\n".join(parts)


def run_loops(seeds: list[int], out: Path, executor: str, fixed_seeds: list[int]) -> None:
    """The validation suite: Chiron, its variants and ablations, and the fixed allocations."""
    paths = [str(LOOPS / f"{n}.toml") for n in LOOP_SCENARIOS]
    evaluate(
        LOOP_AGENTS, paths, seeds, out / "loops", plots=False, tensorboard=False, executor=executor
    )
    rows = [typed_row(r) for r in read_rows(out / "loops" / "results.csv")]
    text = [provenance(seeds, executor)]
    for name, path in zip(LOOP_SCENARIOS, paths, strict=True):
        gpu = "h100" if "h100" in name else "a100"
        fixed = fixed_grid(path, FIXED_GRID[gpu], fixed_seeds)
        m = means(rows, path)
        lines = [
            f"#### {name}",
            "",
            "| agent | interactive att. | batch att. | GPU-h | reward |",
            "|---|---|---|---|---|",
        ]
        for a in LOOP_AGENTS:
            e = m[a]
            lines.append(
                f"| {a} | {e['interactive_attainment']:.3f} | {e['batch_attainment']:.3f} | "
                f"{e['gpu_hours']:.2f} | {e['reward']:,.0f} |"
            )
        span = (
            f"{fixed_seeds[0]}-{fixed_seeds[-1]}" if len(fixed_seeds) > 1 else str(fixed_seeds[0])
        )
        lines += [
            "",
            f"Fixed allocations on seeds {span}: " + fixed_lines(m["chiron"], fixed, "chiron"),
        ]
        text.append("\n".join(lines))
    put("loops", "\n\n".join(text))


def run_sweep(
    seeds: list[int], out: Path, executor: str, scenarios: list[str] = SWEEP_SCENARIOS
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {(p, str(v)): _spec(p, v) for p, values in SWEEP.items() for v in values}
    summary = evaluate(
        sorted(set(specs.values())),
        scenarios,
        seeds,
        out / "sweep",
        plots=False,
        tensorboard=False,
        executor=executor,
    )
    by = {(e["scenario"], e["agent"]): e for e in summary}
    lines = [
        "| scenario | parameter | value | interactive att. | GPU-hours | reward |",
        "|---|---|---|---|---|---|",
    ]
    for sc in scenarios:
        cols = (len(SWEEP) + 1) // 2
        fig, grid = plt.subplots(2, cols, figsize=(3.6 * cols, 6.4))
        for ax, (param, values) in zip(grid.flat, SWEEP.items(), strict=False):
            rows = [by[(sc, specs[(param, str(v))])] for v in values]
            x = range(len(values))
            ax.errorbar(
                x,
                [r["reward_mean"] for r in rows],
                yerr=[r["reward_std"] for r in rows],
                marker="o",
            )
            ax.set_xticks(list(x), [str(v) for v in values])
            d = values.index(DEFAULTS[param])
            ax.axvline(d, color="grey", lw=0.8, ls="--")
            ax.set_title(param)
            ax.set_ylabel("reward")
            ax2 = ax.twinx()
            ax2.plot(x, [r["interactive_attainment_mean"] for r in rows], "C3s--", ms=4)
            ax2.set_ylabel("interactive attainment", color="C3")
            for v, r in zip(values, rows, strict=True):
                lines.append(
                    f"| {sc} | {param} | {v} | {r['interactive_attainment_mean']:.3f} | "
                    f"{r['gpu_hours_mean']:.2f} | {r['reward_mean']:.0f} |"
                )
        fig.suptitle(f"Chiron's sensitivity on {sc} (dashed: default)")
        fig.tight_layout()
        FIGURES.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURES / f"sensitivity_{sc}.png", dpi=80)
        plt.close(fig)
    put("sweep", provenance(seeds, executor) + "\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.run.results", description=__doc__)
    ap.add_argument("--parts", default="loops,paper,others,sweep")
    ap.add_argument("--loop-seeds", default="0-2")
    ap.add_argument("--fixed-seeds", default="0-2")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--sweep-seeds", default="0-1")
    ap.add_argument("--sweep-scenarios", default=",".join(SWEEP_SCENARIOS))
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--executor", default="process", choices=["local", "process", "ray"])
    args = ap.parse_args(argv)

    def seeds(text: str) -> list[int]:
        lo, _, hi = text.partition("-")
        return list(range(int(lo), int(hi or lo) + 1))

    out = Path(args.out)
    parts = args.parts.split(",")
    if "loops" in parts:
        run_loops(seeds(args.loop_seeds), out, args.executor, seeds(args.fixed_seeds))
    if "paper" in parts:
        run_part(
            "paper",
            [*CHIRON, *BASELINES],
            PAPER_SCENARIOS,
            seeds(args.seeds),
            out,
            args.executor,
            comparisons=True,
        )
    if "others" in parts:
        run_part("others", OTHER_AGENTS, OTHER_SCENARIOS, seeds(args.seeds), out, args.executor)
    if "sweep" in parts:
        run_sweep(seeds(args.sweep_seeds), out, args.executor, args.sweep_scenarios.split(","))
    print(json.dumps({"doc": str(DOC), "figures": str(FIGURES)}))  # noqa: T201 (the CLI's answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
