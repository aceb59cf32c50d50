"""The benchmark protocol (``chiron benchmark``, ``docs/benchmark.md``).

A *suite* is a fixed list of scenarios (``benchmarks/suites/<name>.toml``, read by
``agents/run/suite.py``): ``test`` holds scenarios no learned agent of ours trains on
(real-trace replays, unseen family draws, a longer day), ``train`` fixed draws of the training
family. ``benchmark(agents, suite, seeds, out)`` plays every agent on every scenario and seed
(``agents.run.evaluate``, any executor), then scores:

- per scenario, each agent's mean reward, attainment per class, GPU-hours and requests at risk
  over the seeds, and a *normalised score* ``(reward - static) / (chiron - static)`` (static = 0,
  Chiron = 1; both always run);
- a leaderboard: the mean and median score over scenarios, the scenarios where the agent's
  reward beats Chiron's, and those where it also keeps interactive attainment within one point
  of Chiron's;
- the attainment-vs-GPU-hours Pareto figure (a panel per scenario, the frontier drawn).

Every output carries its provenance (command, commit, suite file and its SHA-256, seeds, date):
``leaderboard.md``, ``benchmark.json``, ``scores.csv``, ``pareto.png``, TensorBoard under
``tb/`` (scores and the figure), and the episodes' own ``results.csv`` under ``episodes/``.

About 465 lines: the run (the table's agents, then the planner on their episodes), the scores,
the leaderboard and its Markdown, the Pareto figure and TensorBoard, which share the cells.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.hindsight import ceiling_spec
from agents.plans import save_given
from agents.run.episode import Episode
from agents.run.evidence import evidence, evidence_markdown, profile_figure
from agents.run.ledger import append as ledger_append
from agents.run.ledger import check_purpose, is_sealed
from agents.run.ledger import finish as ledger_finish
from agents.run.reporting import PARAMS, no_nan, read_params, short_label, write_params
from agents.run.suite import BenchmarkError, check_suite, load_suite
from agents.spec import split_planner_spec

REFERENCES = ("static", "chiron")  # the score's 0 and 1: always run
# the ceiling-normalised score's (``agents/run/evidence.py``): run unless ``ceiling=False``
CEILING_REFERENCES = ("random", "planner")
METRICS = (
    "reward",
    "interactive_attainment",
    "batch_attainment",
    "gpu_hours",
    "interactive_at_risk",
    "batch_at_risk",
)


def commit() -> str:
    """The repository's commit (``+dirty`` with uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def seed_label(seeds: Sequence[int]) -> str:
    """``0-4`` for a run of consecutive seeds, else ``0,2,7``."""
    if len(seeds) > 1 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def score_of(reward: float, static: float, chiron: float) -> float:
    """The normalised score: 0 at the static policy's reward, 1 at Chiron's (NaN when equal)."""
    span = chiron - static
    return (reward - static) / span if abs(span) > 1e-9 else math.nan


def scores(rows: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Per (agent, scenario): the metrics' means over seeds and the normalised score.

    ``rows`` are episodes' ``results.csv`` rows; ``names`` maps a scenario spec to its name.
    """
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["agent"], names.get(r["scenario"], r["scenario"])), []).append(r)
    out: list[dict[str, Any]] = []
    for (agent, scenario), unordered in cells.items():
        # by seed, not by when each episode finished: the means' float sums then do not depend
        # on the executor's completion order
        rs = sorted(unordered, key=lambda r: int(r.get("seed", 0)))
        cell: dict[str, Any] = {"agent": agent, "scenario": scenario, "seeds": len(rs)}
        for m in METRICS:
            vals = [float(r[m]) for r in rs]
            cell[m] = _mean(vals)
            cell[f"{m}_std"] = float(np.std(vals)) if vals else math.nan
        if not any(int(r["batch_arrived"]) for r in rs):  # no batch work: no batch attainment
            cell["batch_attainment"] = cell["batch_attainment_std"] = math.nan
        out.append(cell)
    by = {(c["agent"], c["scenario"]): c for c in out}
    for c in out:
        static = by.get(("static", c["scenario"]))
        chiron = by.get(("chiron", c["scenario"]))
        c["score"] = (
            score_of(c["reward"], static["reward"], chiron["reward"])
            if static and chiron
            else math.nan
        )
        # where Chiron's reward is not above the static policy's, the score's scale is inverted
        # or undefined: shown, but left out of the leaderboard's mean and median
        c["chiron_above_static"] = bool(static and chiron and chiron["reward"] > static["reward"])
        c["beats_chiron"] = bool(chiron and c["reward"] > chiron["reward"])
        # the same mean reward as Chiron's (e.g. a residual that plays Chiron's actions): not a win
        c["ties_chiron"] = bool(
            chiron and c["agent"] != "chiron" and c["reward"] == chiron["reward"]
        )
        c["attainment_vs_chiron"] = (
            c["interactive_attainment"] - chiron["interactive_attainment"] if chiron else math.nan
        )
    return out


def leaderboard(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per agent over the suite, best mean score first."""
    agents: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        agents.setdefault(c["agent"], []).append(c)
    board = []
    for agent, cs in agents.items():
        sc = [c["score"] for c in cs if c["chiron_above_static"] and not math.isnan(c["score"])]
        board.append(
            {
                "agent": agent,
                "scenarios": len(cs),
                "scored": len(sc),
                "mean_score": _mean(sc),
                "median_score": float(np.median(sc)) if sc else math.nan,
                "beats_chiron": sum(c["beats_chiron"] for c in cs),
                "ties_chiron": sum(c["ties_chiron"] for c in cs),
                # reward above Chiron's with interactive attainment at most a point below
                "beats_chiron_within_1pt": sum(
                    c["beats_chiron"] and c["attainment_vs_chiron"] >= -0.01 - 1e-9 for c in cs
                ),
                "interactive_attainment": _mean([c["interactive_attainment"] for c in cs]),
                "batch_attainment": _mean(
                    [c["batch_attainment"] for c in cs if not math.isnan(c["batch_attainment"])]
                ),
                "gpu_hours": float(sum(c["gpu_hours"] for c in cs)),
            }
        )
    board.sort(key=lambda b: -(b["mean_score"] if not math.isnan(b["mean_score"]) else -1e18))
    return board


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (x, lower) and attainment
    (y, higher), by increasing cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_figure(cells: list[dict[str, Any]], title: str) -> Any:
    """Attainment against GPU-hours, a panel per scenario and class; the frontier drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(c["scenario"] for c in cells))
    agents = list(dict.fromkeys(c["agent"] for c in cells))
    fig, axes = plt.subplots(2, len(scenarios), figsize=(3.4 * len(scenarios), 6.4), squeeze=False)
    for j, scenario in enumerate(scenarios):
        for row, key in enumerate(("interactive_attainment", "batch_attainment")):
            ax = axes[row][j]
            cs = [c for c in cells if c["scenario"] == scenario and not math.isnan(c[key])]
            pts = [(c["gpu_hours"], c[key]) for c in cs]
            for c, (x, y) in zip(cs, pts, strict=True):
                k = agents.index(c["agent"])
                star = c["agent"] == "chiron"
                ax.errorbar(
                    x,
                    y,
                    xerr=c["gpu_hours_std"],
                    yerr=c[f"{key}_std"],
                    fmt="*" if star else "o",
                    ms=10 if star else 5,
                    color=f"C{k % 10}",
                    capsize=2,
                    label=short_label(c["agent"]),
                )
            if not cs:
                ax.text(0.5, 0.5, "no batch work", ha="center", va="center", transform=ax.transAxes)
            front = [pts[i] for i in pareto_front(pts)]
            if len(front) > 1:
                ax.plot(*zip(*front, strict=True), color="grey", lw=0.8, ls="--")
            ax.set_title(f"{scenario}" if row == 0 else "", fontsize=9)
            ax.set_xlabel("GPU-hours" if row == 1 else "")
            if j == 0:
                ax.set_ylabel(key.replace("_", " "))
            ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(agents), 8), fontsize=8)
    fig.suptitle(title + " (up and to the left is better; dashed: the Pareto frontier)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _fmt(v: Any, spec: str) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return spec.format(v)


def markdown(
    board: list[dict[str, Any]], cells: list[dict[str, Any]], provenance: dict[str, Any]
) -> str:
    """``leaderboard.md``: provenance, the leaderboard, then per-scenario tables."""
    p = provenance
    lines = [
        f"# Benchmark: suite `{p['suite']}`",
        "",
        f"- command: `{p['command']}`",
        f"- commit: `{p['commit']}`; suite `{p['suite_file']}` (sha256 {p['suite_sha256'][:12]})",
        f"- seeds: {p['seeds']}; date: {p['date']}; wall time {p['wall_s']:.0f} s",
        "- score: (reward - static) / (Chiron - static), of the means over seeds per scenario; "
        "the mean and median leave out scenarios where Chiron's reward is not above static's "
        "(marked *)",
        "",
        "| agent | mean score | median score | beats Chiron | and attainment within 1 pt "
        "| interactive attainment | batch attainment | GPU-hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in board:
        lines.append(
            f"| {b['agent']} | {_fmt(b['mean_score'], '{:.2f}')} | "
            f"{_fmt(b['median_score'], '{:.2f}')} | {b['beats_chiron']}/{b['scenarios']}"
            f"{f' ({t} tied)' if (t := b['ties_chiron']) else ''} | "
            f"{b['beats_chiron_within_1pt']}/{b['scenarios']} | "
            f"{_fmt(b['interactive_attainment'], '{:.3f}')} | "
            f"{_fmt(b['batch_attainment'], '{:.3f}')} | {b['gpu_hours']:.2f} |"
        )
    for scenario in dict.fromkeys(c["scenario"] for c in cells):
        inverted = any(not c["chiron_above_static"] for c in cells if c["scenario"] == scenario)
        lines += [
            "",
            f"## {scenario}" + (" *" if inverted else ""),
            "",
            "| agent | reward | score | interactive att. | batch att. | GPU-hours "
            "| at risk (i/b) |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in sorted(
            (c for c in cells if c["scenario"] == scenario), key=lambda c: -c["reward"]
        ):
            lines.append(
                f"| {c['agent']} | {c['reward']:.0f} +- {c['reward_std']:.0f} | "
                f"{_fmt(c['score'], '{:.2f}')} | "
                f"{_fmt(c['interactive_attainment'], '{:.3f}')} | "
                f"{_fmt(c['batch_attainment'], '{:.3f}')} | {c['gpu_hours']:.2f} | "
                f"{c['interactive_at_risk']:.0f}/{c['batch_at_risk']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def _tensorboard(
    out: Path, cells: list[dict[str, Any]], board: list[dict[str, Any]], fig: Any, text: str
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from agents.run.reporting import slug

    for b in board:
        w = SummaryWriter(log_dir=str(out / "tb" / slug(b["agent"])))
        for i, c in enumerate(x for x in cells if x["agent"] == b["agent"]):
            for key in ("score", "reward", "interactive_attainment", "gpu_hours"):
                if not math.isnan(c[key]):
                    w.add_scalar(f"benchmark/{c['scenario']}/{key}", c[key], i)
        if not math.isnan(b["mean_score"]):
            w.add_scalar("benchmark/mean_score", b["mean_score"], 0)
        w.close()
    w = SummaryWriter(log_dir=str(out / "tb" / "suite"))
    w.add_text("benchmark/leaderboard", text, 0)
    w.add_figure("benchmark/pareto", fig, 0, close=False)
    w.close()


def benchmark(
    agents: list[str],
    suite: str,
    seeds: list[int],
    out: Path,
    *,
    command: str = "",
    executor: str = "auto",
    ray_address: str | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    resume: bool = False,
    ceiling: bool = True,
    purpose: str = "",
    training_runs: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Run ``agents`` (static and Chiron added; random and the hindsight planner too unless
    ``ceiling`` is False) on ``suite`` over ``seeds``; write the outputs into ``out`` and return
    what ``benchmark.json`` holds. ``resume``: keep the episodes already in
    ``out/episodes/results.csv`` (``chiron benchmark --resume``). A run of the sealed ``test``
    suite needs a ``purpose`` and is appended to its ledger (``agents/run/ledger.py``).
    ``training_runs``: agents pooled as independent training runs of one name (``evidence``)."""
    from agents.run.evaluate import evaluate, read_rows, typed_row

    s = load_suite(suite)
    check_purpose(s, purpose)  # the sealed suite says why it runs, before anything else
    check_suite(s)  # every scenario and trace, before any episode runs
    if not seeds:
        raise BenchmarkError("no seeds to run")
    if len(set(agents)) != len(agents):
        raise BenchmarkError(f"an agent is listed twice: {agents}")
    refs = (*REFERENCES, *CEILING_REFERENCES) if ceiling else REFERENCES
    members = dict.fromkeys(m for ms in (training_runs or {}).values() for m in ms)
    run = [*(a for a in refs if a not in agents), *agents, *(m for m in members if m not in agents)]
    if clash := set(training_runs or {}) & set(run):
        raise BenchmarkError(f"--training-runs: {sorted(clash)} also names an agent that runs")
    # the planner takes every agent of the table among its bases: none is above the ceiling
    shown, run = run, [ceiling_spec(run) if a == "planner" else a for a in run]
    shown_command, at = command or " ".join(["chiron", *sys.argv[1:]]), commit()
    # the sealed suite: its ledger line first, so that a run that fails still counts
    line = (
        ledger_append(
            commit=at,
            command=shown_command,
            suite=s,
            agents=run,
            seeds=seed_label(seeds),
            purpose=purpose,
        )
        if is_sealed(s)
        else None
    )
    out.mkdir(parents=True, exist_ok=True)
    names = {spec: name for name, spec in s.scenarios}
    rows: list[dict[str, Any]] = []

    def keep(ep: Episode) -> None:
        rows.append(ep.row)

    def keep_for_planner(ep: Episode) -> None:
        keep(ep)
        r = ep.row
        save_given(
            given, r["agent"], r["scenario"], r["seed"], ep.actions, r["reward"], ep.env_kwargs
        )

    t0 = time.perf_counter()
    # the table's agents first, then the planner, which starts from their episodes (saved in
    # ``given``) rather than playing each of its bases again
    given = out / "episodes" / "given"
    if not resume:  # none from an earlier run in this folder
        shutil.rmtree(given, ignore_errors=True)
    first = [a for a in run if split_planner_spec(a)[0] != "planner"]
    phases = (first, run) if len(first) < len(run) else (run,)
    for phase, agents_now in enumerate(phases):
        evaluate(
            agents_now,
            [spec for _, spec in s.scenarios],
            seeds,
            out / "episodes",
            plots=False,
            tensorboard=False,
            progress=progress,
            on_episode=keep_for_planner if phase == 0 and agents_now is first else keep,
            executor=executor,
            ray_address=ray_address,
            resume=resume or phase > 0,
            given=given,
            # a resumed first phase keeps the planner's finished episodes in the file it shares
            # with the second (they once ran again, all of them)
            keep_others=True,
        )
    if resume:  # the kept episodes' rows, as results.csv has them, beside those run now
        ran = {(r["agent"], r["scenario"], str(r["seed"])) for r in rows}
        kept = read_params(out / PARAMS)
        for r in read_rows(out / "episodes" / "results.csv"):
            key = (r["agent"], r["scenario"], r["seed"])
            if key not in ran:
                rows.append({**typed_row(r), "_params": kept.get(key, {})})
    write_params(out / PARAMS, rows)
    for r in rows:  # the ceiling under its name (its spec, in episodes/, names the bases added)
        r["agent"] = shown[run.index(r["agent"])]
    cells = scores(rows, names)
    order = {n: i for i, (n, _) in enumerate(s.scenarios)}
    cells.sort(key=lambda c: (order[c["scenario"]], shown.index(c["agent"])))
    board = leaderboard(cells)
    provenance: dict[str, Any] = {
        "command": shown_command,
        "commit": at,
        "suite": s.name,
        "suite_file": _shown(s.path),
        "suite_sha256": s.sha256,
        "scenarios": dict(s.scenarios),
        "seeds": list(seeds),
        "agents": run,
        "training_runs": dict(training_runs or {}),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": time.perf_counter() - t0,
    }
    ev = evidence(rows, names, training_runs)
    text = markdown(board, cells, provenance) + "\n" + evidence_markdown(ev)
    (out / "leaderboard.md").write_text(text)
    with (out / "scores.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(cells[0]))
        writer.writeheader()
        writer.writerows(cells)
    if line is not None:
        provenance["ledger"] = ledger_finish(line, out / "scores.csv")
    fig = pareto_figure(cells, f"suite {s.name}, seeds {seed_label(seeds)}")
    fig.savefig(out / "pareto.png", dpi=90)
    import matplotlib.pyplot as plt

    if any("profile" in a for a in ev["agents"].values()):
        profiles = profile_figure(ev)
        profiles.savefig(out / "profiles.png", dpi=90)
        plt.close(profiles)
    if tensorboard:
        _tensorboard(out, cells, board, fig, text)
    plt.close(fig)
    result = {"provenance": provenance, "leaderboard": board, "scores": cells, "evidence": ev}
    (out / "benchmark.json").write_text(json.dumps(no_nan(result), indent=1, sort_keys=True) + "\n")
    return result


def _shown(p: Path) -> str:
    """A path as the repository names it (absolute outside it)."""
    root = Path(__file__).resolve().parents[2]
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


__all__ = [
    "REFERENCES",
    "benchmark",
    "leaderboard",
    "pareto_front",
    "score_of",
    "scores",
]
