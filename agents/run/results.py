"""``make results``: every table and figure of ``docs/results.md``, regenerated.

Three parts, each an ``evaluate`` grid on the process (or Ray) executor:

- ``paper``: the scenarios closest to the Chiron paper (``large-70b``, ``chiron-paper``,
  ``chiron-paper-70b``), Chiron, its ablations and every baseline, 5 seeds;
- ``others``: the other bundled mixed and interactive scenarios, the same agents and the shipped
  PPO model;
- ``sweep``: Chiron's sensitivity to its headroom, scale-down window, utilisation bounds and the
  estimator's z, one figure per scenario.

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

from agents.run.evaluate import evaluate
from agents.run.reporting import markdown

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "results.md"
FIGURES = REPO / "docs" / "figures"

CHIRON = ["chiron", "chiron-global-only", "chiron-local-only", "chiron-no-tbp"]
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
# parameter -> values (the default marked in the figure); "bounds" sets upper and lower together
SWEEP: dict[str, list[Any]] = {
    "headroom_instances": [0, 1, 2, 4],
    "down_hold_cold_starts": [1.0, 2.0, 4.0],
    "bounds": [(0.7, 0.3), (0.8, 0.4), (0.9, 0.6)],
    "z": [0.0, 1.645, 3.0],
}
DEFAULTS = {"headroom_instances": 2, "down_hold_cold_starts": 2.0, "bounds": (0.8, 0.4), "z": 1.645}


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
    put(name, provenance(seeds, executor) + "\n\n" + markdown(summary))
    return summary


def run_sweep(seeds: list[int], out: Path, executor: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = {(p, str(v)): _spec(p, v) for p, values in SWEEP.items() for v in values}
    summary = evaluate(
        sorted(set(specs.values())),
        SWEEP_SCENARIOS,
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
    for sc in SWEEP_SCENARIOS:
        fig, axes = plt.subplots(1, len(SWEEP), figsize=(4 * len(SWEEP), 3.4))
        for ax, (param, values) in zip(axes, SWEEP.items(), strict=True):
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
    ap.add_argument("--parts", default="paper,others,sweep")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--sweep-seeds", default="0-1")
    ap.add_argument("--out", default="runs/results")
    ap.add_argument("--executor", default="process", choices=["local", "process", "ray"])
    args = ap.parse_args(argv)

    def seeds(text: str) -> list[int]:
        lo, _, hi = text.partition("-")
        return list(range(int(lo), int(hi or lo) + 1))

    out = Path(args.out)
    parts = args.parts.split(",")
    if "paper" in parts:
        run_part(
            "paper", [*CHIRON, *BASELINES], PAPER_SCENARIOS, seeds(args.seeds), out, args.executor
        )
    if "others" in parts:
        run_part("others", OTHER_AGENTS, OTHER_SCENARIOS, seeds(args.seeds), out, args.executor)
    if "sweep" in parts:
        run_sweep(seeds(args.sweep_seeds), out, args.executor)
    print(json.dumps({"doc": str(DOC), "figures": str(FIGURES)}))  # noqa: T201 (the CLI's answer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
