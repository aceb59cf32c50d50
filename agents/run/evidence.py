"""What a benchmark's figures may claim: interval estimates over seeds, a ceiling, and the Pareto
view (``docs/benchmark.md``, "Reading the intervals").

From the episodes' rows of a benchmark run, per agent:

- **ceiling-normalised scores**: per scenario, 0 at the better mean reward of ``static`` and
  ``random``, 1 at the hindsight ``planner``'s (``agents/hindsight.py``); their interquartile mean
  over seeds and scenarios with a stratified-bootstrap 95 % interval (``agents/run/intervals.py``,
  rliable's definitions), and the share of the Chiron-to-ceiling gap the agent closes;
- **probability of improvement over Chiron** with its interval (per scenario it depends only on
  the order of rewards, so it needs no normaliser), and performance profiles;
- per scenario, the **paired reward difference from Chiron** over the seeds with its 95 %
  interval and verdict (a win needs the lower bound above 0), **dominance** against Chiron in
  (interactive attainment, GPU-hours), and the **GPU-hours at matched attainment** (the agent's,
  where its attainment reaches Chiron's; none where it does not);
- how the **ranking moves with the price of a violation** (the reward's violation term times
  each factor).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from agents.run.intervals import (
    improvement_interval,
    iqm,
    performance_profile,
    stratified_interval,
)
from agents.run.stats import paired_interval, verdict

FLOOR = ("static", "random")  # the normaliser's 0: the better of the two, per scenario
CEILING = "planner"  # its 1
BASE = "chiron"  # what improvements, dominance and matched attainment are measured against
PRICE_FACTORS = (0.2, 0.5, 1.0, 2.0, 5.0)
TAUS = tuple(round(0.1 * k, 2) for k in range(-5, 13))  # performance profile thresholds
MIN_SEEDS = 20  # the protocol's minimum for a claim (docs/benchmark.md)


def price_ranks(
    means: dict[str, dict[str, float]], factors: tuple[float, ...] = PRICE_FACTORS
) -> dict[str, list[int]]:
    """Per agent, its rank (1 = best) by mean reward with the violation term's price multiplied
    by each factor; ``means`` maps an agent to its mean ``reward`` and ``reward_violation``."""
    ranks: dict[str, list[int]] = defaultdict(list)
    for f in factors:
        score = {a: m["reward"] + (f - 1.0) * m["reward_violation"] for a, m in means.items()}
        for k, a in enumerate(sorted(score, key=lambda a: -score[a]), start=1):
            ranks[a].append(k)
    return dict(ranks)


def _dominance(a: dict[str, float], b: dict[str, float]) -> str:
    """``a`` against ``b`` in (interactive attainment up, GPU-hours down)."""
    ge = a["interactive_attainment"] >= b["interactive_attainment"]
    le = a["gpu_hours"] <= b["gpu_hours"]
    gt = a["interactive_attainment"] > b["interactive_attainment"]
    lt = a["gpu_hours"] < b["gpu_hours"]
    if ge and le:
        return "dominates" if gt or lt else "equal"
    if not (ge or le):
        return "dominated"
    return "neither"


Key = int | tuple[int, int]  # a traffic seed, or (training run, traffic seed) of a group


def _seed(key: Key) -> int:
    return key[1] if isinstance(key, tuple) else key


def evidence(
    rows: list[dict[str, Any]],
    names: dict[str, str],
    training_runs: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The summaries above, from ``results.csv`` rows (``names``: scenario spec -> name).

    ``training_runs`` maps a name to the agents that are independent training runs of one
    pipeline: their episodes are that name's, each (training run, traffic seed) one sample, so
    its intervals are over training runs and traffic seeds together; its paired differences pair
    each sample with Chiron's episode of the same traffic seed."""
    member = {
        spec: (name, i)
        for name, specs in (training_runs or {}).items()
        for i, spec in enumerate(specs)
    }
    runs: dict[tuple[str, str], dict[Key, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        scenario = names.get(r["scenario"], r["scenario"])
        if r["agent"] in member:
            name, i = member[r["agent"]]
            runs[(name, scenario)][(i, int(r["seed"]))] = {**r, "agent": name}
        else:
            runs[(r["agent"], scenario)][int(r["seed"])] = r
    agents = list(dict.fromkeys(a for a, _ in runs))
    scenarios = list(dict.fromkeys(s for _, s in runs))

    def mean(agent: str, scenario: str, key: str) -> float:
        mine = runs.get((agent, scenario), {})
        return float(np.mean([float(r[key]) for r in mine.values()])) if mine else math.nan

    norm: dict[str, dict[str, Any]] = {}
    for s in scenarios:
        floors = [mean(a, s, "reward") for a in FLOOR if (a, s) in runs]
        floor = max(floors) if floors else math.nan
        ceiling = mean(CEILING, s, "reward")
        norm[s] = {
            "floor": floor,
            "ceiling": ceiling,
            "defined": bool(floors and not math.isnan(ceiling) and ceiling - floor > 1e-9),
            # a ceiling some agent is above is no ceiling: said (the planner lacked its plan)
            "beaten_by": [
                a
                for a in agents
                if a != CEILING and (a, s) in runs and mean(a, s, "reward") > ceiling + 1e-6
            ],
        }
    tasks = [s for s in scenarios if norm[s]["defined"]]

    def seeds_of(agent: str, among: list[str]) -> list[Key]:
        sets = [set(runs.get((agent, s), {})) for s in among]
        return sorted(set.intersection(*sets)) if sets else []

    def matrix(agent: str, among: list[str], key: str, scaled: bool) -> np.ndarray | None:
        seeds = seeds_of(agent, among)
        if not seeds or not among:
            return None
        m = np.array([[float(runs[(agent, s)][k][key]) for s in among] for k in seeds])
        if scaled:
            lo = np.array([norm[s]["floor"] for s in among])
            hi = np.array([norm[s]["ceiling"] for s in among])
            m = (m - lo) / (hi - lo)
        return m

    departures: dict[str, list[float]] = defaultdict(list)
    for r in rows:  # residual and ensemble agents: how often they did not play Chiron's action
        rate = (r.get("_params") or {}).get("departure_rate")
        if rate is not None:
            departures[member.get(r["agent"], (r["agent"], 0))[0]].append(float(rate))
    per_agent: dict[str, dict[str, Any]] = {}
    base_norm = matrix(BASE, tasks, "reward", True)
    base_iqm = iqm(base_norm) if base_norm is not None else math.nan
    for a in agents:
        keys = seeds_of(a, scenarios)
        out: dict[str, Any] = {"seeds": len({_seed(k) for k in keys}), "samples": len(keys)}
        if a in (training_runs or {}):  # its samples are (training run, traffic seed) pairs
            out["training_runs"] = len({k[0] for k in keys if isinstance(k, tuple)})
        # an agent absent from a scenario has no aggregate (IQM, P(improve)): said, not hidden
        out["missing_scenarios"] = [s for s in scenarios if (a, s) not in runs]
        if departures.get(a):
            out["departure_rate"] = float(np.mean(departures[a]))
        m = matrix(a, tasks, "reward", True)
        if m is not None:
            est, lo, hi = stratified_interval(m)
            out.update(iqm=est, iqm_low=lo, iqm_high=hi, iqm_scenarios=len(tasks))
            out["gap_closed"] = (
                (est - base_iqm) / (1.0 - base_iqm) if abs(1.0 - base_iqm) > 1e-9 else math.nan
            )
            out["profile"] = [
                {"tau": t, "share": p, "low": pl, "high": ph}
                for t, p, pl, ph in performance_profile(m, TAUS, reps=500)
            ]
        x, y = matrix(a, scenarios, "reward", False), matrix(BASE, scenarios, "reward", False)
        if x is not None and y is not None and a != BASE:
            p, lo, hi = improvement_interval(x, y)
            out.update(p_improve=p, p_improve_low=lo, p_improve_high=hi)
        per_agent[a] = out
    cells = []
    for s in scenarios:
        means = {
            a: {
                k: mean(a, s, k)
                for k in ("reward", "reward_violation", "interactive_attainment", "gpu_hours")
            }
            for a in agents
            if (a, s) in runs
        }
        ranks = price_ranks(means)
        for a in means:
            cell: dict[str, Any] = {"agent": a, "scenario": s, "price_ranks": ranks[a]}
            if norm[s]["defined"]:
                cell["ceiling_score"] = (means[a]["reward"] - norm[s]["floor"]) / (
                    norm[s]["ceiling"] - norm[s]["floor"]
                )
            if a != BASE and BASE in means:
                common = [k for k in sorted(runs[(a, s)]) if _seed(k) in runs[(BASE, s)]]
                d, lo, hi = paired_interval(
                    [float(runs[(a, s)][k]["reward"]) for k in common],
                    [float(runs[(BASE, s)][_seed(k)]["reward"]) for k in common],
                )
                base = means[BASE]
                matched = means[a]["interactive_attainment"] >= base["interactive_attainment"]
                cell.update(
                    reward_vs_chiron=d,
                    reward_vs_chiron_low=lo,
                    reward_vs_chiron_high=hi,
                    verdict=verdict(d, lo, hi),
                    paired_seeds=len(common),
                    dominance=_dominance(means[a], base),
                    matched_gpu_hours=means[a]["gpu_hours"] if matched else None,
                    chiron_gpu_hours=base["gpu_hours"],
                )
            cells.append(cell)
    for a, out in per_agent.items():
        mine = [c for c in cells if c["agent"] == a and "verdict" in c]
        for v in ("better", "worse", "tie"):
            out[f"scenarios_{v}"] = sum(c["verdict"] == v for c in mine)
        for v in ("dominates", "dominated", "neither", "equal"):
            out[f"scenarios_{v}"] = sum(c["dominance"] == v for c in mine)
    return {
        "floor": list(FLOOR),
        "ceiling": CEILING,
        "normaliser": norm,
        "price_factors": list(PRICE_FACTORS),
        "min_seeds_for_claims": MIN_SEEDS,
        "agents": per_agent,
        "cells": cells,
    }


def _num(v: Any, spec: str = "{:.2f}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)


def evidence_markdown(ev: dict[str, Any]) -> str:
    """The intervals as ``leaderboard.md``'s second part."""
    per = ev["agents"]
    fewest = min((a["seeds"] for a in per.values()), default=0)
    defined = [s for s, n in ev["normaliser"].items() if n["defined"]]
    lines = [
        "## Intervals (95 %, stratified bootstrap over seeds; rliable's definitions)",
        "",
        f"- ceiling-normalised score: 0 = the better of {' and '.join(ev['floor'])}, 1 = "
        f"`{ev['ceiling']}` (hindsight), per scenario; defined on {len(defined)} of "
        f"{len(ev['normaliser'])} scenarios"
        + ("" if defined else " (the planner did not run: `--no-ceiling`)"),
        "- P(improve): probability that the agent's reward beats Chiron's on a scenario, "
        "averaged over scenarios; a win needs the interval above 0.5",
        "- better / tie / worse: scenarios where the paired reward difference from Chiron has its "
        "95 % interval above 0, around 0, below 0; dominates / dominated: in (interactive "
        "attainment, GPU-hours) against Chiron's means; departs from Chiron: the share of a "
        "residual or ensemble agent's decisions whose action was not Chiron's",
    ]
    for name, a in per.items():
        if a.get("missing_scenarios"):
            lines.append(
                f"- `{name}` did not run on {', '.join(a['missing_scenarios'])}: no IQM or "
                "P(improve) for it"
            )
    for s, n in ev["normaliser"].items():
        if n.get("beaten_by"):
            lines.append(
                f"- **the ceiling is beaten on {s}** by {', '.join(n['beaten_by'])}: the "
                "planner's bases lacked that agent, so scores above 1 there are not a ceiling's"
            )
    for name, a in per.items():
        if "training_runs" in a:
            lines.append(
                f"- `{name}`: {a['training_runs']} independent training runs x {a['seeds']} "
                f"traffic seeds; its intervals are over both ({a['samples']} samples per scenario)"
            )
    if fewest < ev["min_seeds_for_claims"]:
        lines.append(
            f"- **{fewest} seeds**: fewer than the protocol's {ev['min_seeds_for_claims']} for a "
            "claim; the intervals are coarse"
        )
    lines += [
        "",
        "| agent | IQM score [95 %] | gap to ceiling closed | P(improve) over Chiron [95 %] "
        "| better / tie / worse | dominates / dominated | departs from Chiron |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in sorted(per.items(), key=lambda kv: -kv[1].get("iqm", -math.inf)):
        iqm_text = (
            f"{_num(a['iqm'])} [{_num(a['iqm_low'])}, {_num(a['iqm_high'])}]" if "iqm" in a else "-"
        )
        poi = (
            f"{_num(a['p_improve'])} [{_num(a['p_improve_low'])}, {_num(a['p_improve_high'])}]"
            if "p_improve" in a
            else "-"
        )
        lines.append(
            f"| {name} | {iqm_text} | {_num(a.get('gap_closed'))} | {poi} | "
            f"{a['scenarios_better']} / {a['scenarios_tie']} / {a['scenarios_worse']} | "
            f"{a['scenarios_dominates']} / {a['scenarios_dominated']} | "
            f"{_num(a.get('departure_rate'), '{:.1%}')} |"
        )
    lines += [
        "",
        "Per scenario, against Chiron: reward difference [95 %], GPU-hours at matched "
        "interactive attainment (- where the agent's attainment is below Chiron's), rank by "
        "reward with the violation price x" + ", x".join(f"{f:g}" for f in ev["price_factors"]),
        "",
        "| scenario | agent | ceiling score | reward - Chiron [95 %] | GPU-h matched (Chiron) "
        "| ranks by price |",
        "|---|---|---|---|---|---|",
    ]
    for c in ev["cells"]:
        if "verdict" not in c:
            continue
        lines.append(
            f"| {c['scenario']} | {c['agent']} | {_num(c.get('ceiling_score'))} | "
            f"{c['reward_vs_chiron']:.0f} [{c['reward_vs_chiron_low']:.0f}, "
            f"{c['reward_vs_chiron_high']:.0f}] {c['verdict']} | "
            f"{_num(c['matched_gpu_hours'])} ({c['chiron_gpu_hours']:.2f}) | "
            f"{' '.join(str(r) for r in c['price_ranks'])} |"
        )
    return "\n".join(lines) + "\n"


def profile_figure(ev: dict[str, Any]) -> Any:
    """Performance profiles: share of runs above each ceiling-normalised score, with bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = [(name, a) for name, a in ev["agents"].items() if "profile" in a]
    for k, (name, a) in enumerate(drawn):
        taus = [p["tau"] for p in a["profile"]]
        # ten colours, then the same ten dashed: every agent told apart
        style = ("-", "--", ":")[min(k // 10, 2)]
        ax.plot(taus, [p["share"] for p in a["profile"]], style, color=f"C{k % 10}", label=name)
        lo, hi = [p["low"] for p in a["profile"]], [p["high"] for p in a["profile"]]
        ax.fill_between(taus, lo, hi, color=f"C{k % 10}", alpha=0.12)
    ax.set_xlabel("ceiling-normalised score tau (0: better of static and random, 1: planner)")
    ax.set_ylabel("share of runs with score > tau")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


__all__ = [
    "BASE",
    "CEILING",
    "FLOOR",
    "PRICE_FACTORS",
    "evidence",
    "evidence_markdown",
    "price_ranks",
    "profile_figure",
]
