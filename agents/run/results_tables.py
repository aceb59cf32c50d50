"""The comparisons of ``docs/results.md`` built from per-episode rows (``results.csv``).

- ``paired_table``: each agent against a reference, seed by seed (the same traffic), with 95 %
  bootstrap intervals (``agents/run/stats.py``) and a verdict that the interval decides;
- ``pareto_figure``: interactive attainment against GPU-hours, every seed and the means, the
  agents no other beats on both axes marked;
- ``price_table``: how the ranking by reward changes with the price of a violation (the reward's
  violation term rescaled; nothing is rerun);
- ``fixed_lines``: an autoscaler against the cheapest fixed allocation reaching its attainment
  (``agents/run/fixed.py``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from agents.run.evidence import price_ranks
from agents.run.stats import paired_interval, verdict

METRICS = (  # (column, label, format, higher is better)
    ("interactive_attainment", "interactive att.", "{:+.3f}", True),
    ("batch_attainment", "batch att.", "{:+.3f}", True),
    ("gpu_hours", "GPU-h", "{:+.2f}", False),
    ("reward", "reward", "{:+,.0f}", True),
)


def by_agent(rows: list[dict[str, Any]], scenario: str) -> dict[str, dict[int, dict[str, Any]]]:
    """``{agent: {seed: row}}`` of one scenario."""
    out: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r["scenario"] == scenario:
            out[r["agent"]][int(r["seed"])] = r
    return out


def paired_table(
    rows: list[dict[str, Any]], scenario: str, reference: str, others: list[str]
) -> str:
    """``reference`` minus each of ``others``, per metric: mean [95 % interval] and verdict."""
    ag = by_agent(rows, scenario)
    ref = ag[reference]
    head = "| " + reference + " minus | " + " | ".join(m[1] for m in METRICS) + " |"
    lines = [head, "|---" * (len(METRICS) + 1) + "|"]
    for other in others:
        seeds = sorted(set(ref) & set(ag.get(other, {})))
        if not seeds:
            continue
        cells = []
        for col, _, fmt, better in METRICS:
            a = [float(ref[s][col]) for s in seeds]
            b = [float(ag[other][s][col]) for s in seeds]
            m, lo, hi = paired_interval(a, b)
            word = verdict(m, lo, hi, better)
            cells.append(f"{fmt.format(m)} [{fmt.format(lo)}, {fmt.format(hi)}] {word}")
        lines.append(f"| {other} ({len(seeds)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def means(rows: list[dict[str, Any]], scenario: str) -> dict[str, dict[str, float]]:
    """Per agent, the mean of each metric over its seeds."""
    return {
        a: {col: float(np.mean([float(r[col]) for r in seeds.values()])) for col, *_ in METRICS}
        | {
            "reward_violation": float(
                np.mean([float(r["reward_violation"]) for r in seeds.values()])
            )
        }
        for a, seeds in by_agent(rows, scenario).items()
    }


def front(points: dict[str, dict[str, float]]) -> list[str]:
    """Agents no other beats on both interactive attainment (higher) and GPU-hours (lower)."""
    out = []
    for a, p in points.items():
        beaten = any(
            q["interactive_attainment"] >= p["interactive_attainment"]
            and q["gpu_hours"] <= p["gpu_hours"]
            and (
                q["interactive_attainment"] > p["interactive_attainment"]
                or q["gpu_hours"] < p["gpu_hours"]
            )
            for b, q in points.items()
            if b != a
        )
        if not beaten:
            out.append(a)
    return sorted(out, key=lambda a: points[a]["gpu_hours"])


def pareto_figure(rows: list[dict[str, Any]], scenario: str, path: Path) -> list[str]:
    """The attainment / GPU-hours plane of one scenario, saved to ``path``; the front's agents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ag = by_agent(rows, scenario)
    mean = means(rows, scenario)
    best = front(mean)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, (agent, seeds) in enumerate(sorted(ag.items())):
        color = f"C{i % 10}"
        xs = [float(r["gpu_hours"]) for r in seeds.values()]
        ys = [float(r["interactive_attainment"]) for r in seeds.values()]
        ax.scatter(xs, ys, s=10, color=color, alpha=0.35)
        m = mean[agent]
        on = agent in best
        ax.scatter(
            [m["gpu_hours"]],
            [m["interactive_attainment"]],
            s=70 if on else 35,
            color=color,
            marker="*" if on else "o",
            edgecolors="black" if on else "none",
            label=agent + (" (front)" if on else ""),
        )
    xy = [(mean[a]["gpu_hours"], mean[a]["interactive_attainment"]) for a in best]
    ax.plot([p[0] for p in xy], [p[1] for p in xy], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("interactive SLO attainment")
    ax.set_title(f"{scenario}: every seed (small) and the mean (large; stars: the front)")
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return best


def price_table(
    rows: list[dict[str, Any]], scenario: str, factors: tuple[float, ...] = (0.2, 1.0, 5.0)
) -> str:
    """Rank by mean reward with the violation term's price multiplied by each factor."""
    mean = means(rows, scenario)
    head = "| agent | " + " | ".join(f"rank, violation x{f:g}" for f in factors) + " |"
    lines = [head, "|---" * (len(factors) + 1) + "|"]
    ranks = price_ranks(mean, factors)
    for a in sorted(ranks, key=lambda a: ranks[a][1]):
        lines.append(f"| {a} | " + " | ".join(str(k) for k in ranks[a]) + " |")
    return "\n".join(lines)


def fixed_lines(agent_means: dict[str, float], fixed_rows: list[dict[str, Any]], agent: str) -> str:
    """One line: ``agent`` against the cheapest fixed allocation reaching its attainment."""
    target = agent_means["interactive_attainment"]
    ok = [
        r
        for r in fixed_rows
        if r["interactive_attainment"] >= target and r["batch_attainment"] >= 0.99
    ]
    if not ok:
        gh = agent_means["gpu_hours"]
        return f"{agent}: {target:.3f} at {gh:.2f} GPU-h; no fixed allocation reaches it"
    best = min(ok, key=lambda r: r["gpu_hours"])
    counts = ", ".join(f"{k} {v}" for k, v in best["counts"].items())
    ratio = agent_means["gpu_hours"] / best["gpu_hours"]
    return (
        f"{agent}: {target:.3f} at {agent_means['gpu_hours']:.2f} GPU-h; the cheapest fixed "
        f"allocation reaching it ({counts}): {best['interactive_attainment']:.3f} at "
        f"{best['gpu_hours']:.2f} GPU-h; ratio {ratio:.2f}"
    )


__all__ = ["fixed_lines", "front", "means", "paired_table", "pareto_figure", "price_table"]
