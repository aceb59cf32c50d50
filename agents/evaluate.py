"""Compare agents on the same traffic: episodes, tables, plots and TensorBoard runs.

``evaluate(agents, scenarios, seeds, out)`` runs every (agent, scenario, seed) episode (each seed
is the same requests for every agent), and writes into ``out``:

- ``results.csv`` / ``results.json``: one row per episode (``results.csv`` has no wall-clock
  figures, so the same seeds give the same bytes);
- ``results.md``: per scenario, mean +- std over seeds of every metric and its ratio to Chiron;
- ``plots/compare_<scenario>.png`` (bars) and ``plots/<scenario>/<agent>_seed<k>.png`` (time
  series of instances per pool, batch caps, queues, TTFT and ITL against the SLO);
- ``tb/<scenario>/<agent>/seed<k>/``: TensorBoard runs (scalars against simulated seconds, the
  time-series figure, the scenario and agent parameters as text);
- ``failures.json``: the episodes that raised (agent, scenario, seed, error), when any did.

Episodes run as independent tasks (``agents/executors.py``: in this process, a local process pool
or Ray); every file is written here, in the driver, from the episodes' rows and series, so the
outputs are the same whichever executor ran them.

Needs the ``rl`` extra (torch's TensorBoard writer, matplotlib, tqdm).
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents import agent_env_kwargs, make_agent
from agents.executors import run_tasks
from chiron_gym.envs import AutoscaleEnv
from chiron_gym.sim import CLASS_NAMES, POOL_NAMES

# Columns of results.csv, in order (all deterministic for a given agent, scenario and seed).
COLUMNS = (
    "agent",
    "scenario",
    "seed",
    "interactive_attainment",
    "batch_attainment",
    "batch_at_risk",
    "interactive_arrived",
    "batch_arrived",
    "slo_met_requests",
    "gpu_hours",
    "goodput_tokens_per_s",
    "gpu_hours_per_1k_met",
    "reward",
    "reward_slo_met_work",
    "reward_gpu_cost",
    "reward_violation",
    "reward_churn",
    "scale_actions",
    "steps",
)
TABLE_METRICS = (
    ("interactive_attainment", "interactive attainment", "{:.3f}"),
    ("batch_attainment", "batch attainment", "{:.3f}"),
    ("batch_at_risk", "batch at risk", "{:.0f}"),
    ("gpu_hours", "GPU-hours", "{:.2f}"),
    ("goodput_tokens_per_s", "goodput (tokens/s)", "{:.0f}"),
    ("gpu_hours_per_1k_met", "GPU-h / 1k met", "{:.3f}"),
    ("reward", "reward", "{:.0f}"),
)
TB_SCALARS = (
    "cluster/instances_interactive",
    "cluster/instances_mixed",
    "cluster/instances_batch",
    "cluster/batch_cap_interactive",
    "cluster/batch_cap_mixed",
    "cluster/batch_cap_batch",
    "cluster/gpus",
    "queue/interactive",
    "queue/batch",
    "slo/interactive_ttft_p95_over_slo",
    "slo/interactive_itl_p95_over_slo",
    "slo/batch_itl_p95_over_slo",
    "slo/batch_wait_over_slack",
    "slo/interactive_attainment_window",
    "reward/step",
    "reward/slo_met_work",
    "reward/gpu_cost",
    "reward/violation",
    "reward/churn",
)
TB_EPISODE = tuple(f"episode/{c}" for c in COLUMNS[3:])


@dataclass
class Episode:
    """One evaluated episode: its row and its time series."""

    row: dict[str, Any]
    series: dict[str, list[float]]
    wall_s: float


def _series_point(info: dict[str, Any], reward: float) -> dict[str, float]:
    raw = info["raw"]
    point: dict[str, float] = {"t": info["sim_time_s"]}
    for p in POOL_NAMES:
        point[f"cluster/instances_{p}"] = raw[f"{p}.ready"] + raw[f"{p}.starting"]
        point[f"cluster/batch_cap_{p}"] = raw[f"{p}.batch_cap"]
    point["cluster/gpus"] = float(info["gpus"])
    for c in CLASS_NAMES:
        point[f"queue/{c}"] = raw[f"{c}.queue"]
    point["slo/interactive_ttft_p95_over_slo"] = raw["interactive.ttft_p95_over_slo"]
    point["slo/interactive_itl_p95_over_slo"] = raw["interactive.itl_p95_over_slo"]
    point["slo/batch_itl_p95_over_slo"] = raw["batch.itl_p95_over_slo"]
    point["slo/batch_wait_over_slack"] = raw["batch.wait_over_slack"]
    point["slo/interactive_attainment_window"] = raw["interactive.attainment"]
    point["reward/step"] = reward
    for term, v in info["reward_terms"].items():
        point[f"reward/{term}"] = v
    return point


def attainment_with_risk(report: Any, at_risk: int) -> float:
    """Met over requests whose fate is known, counting ``at_risk`` queued ones as misses."""
    known = report.met + report.late + report.rejected + report.overdue + at_risk
    return float(report.met / known) if known else 1.0


def run_episode(
    agent: str, scenario: str, seed: int, *, env_kwargs: dict[str, Any] | None = None
) -> Episode:
    """Run one episode of ``agent`` on ``scenario`` with traffic seed ``seed``.

    A ``ppo:PATH`` agent runs in the action mode it was trained in (``train.json``): PPO-global
    with Chiron's local loop, PPO-local with Chiron's global loop.
    """
    kwargs = {**agent_env_kwargs(agent), **(env_kwargs or {})}
    if agent.startswith("ppo:"):
        record = Path(agent[4:])
        record = (record if record.is_dir() else record.parent) / "train.json"
        if record.is_file():
            kwargs.setdefault("action_mode", json.loads(record.read_text())["action_mode"])
    env = AutoscaleEnv(scenario, **kwargs)
    t0 = time.perf_counter()
    obs, info = env.reset(seed=seed)
    policy = make_agent(agent, env.agent_context(), seed=seed)
    series: dict[str, list[float]] = {}
    totals = dict.fromkeys(("slo_met_work", "gpu_cost", "violation", "churn"), 0.0)
    reward_sum = 0.0
    scale_actions = 0
    steps = 0
    start = True
    done = False
    while not done:
        action, _ = policy.predict(obs, episode_start=np.array([start]), deterministic=True)
        start = False
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        reward_sum += reward
        for k, v in info["reward_terms"].items():
            totals[k] += v
        scale_actions += sum(1 for d in info["applied_deltas"].values() if d)
        for k, v in _series_point(info, reward).items():
            series.setdefault(k, []).append(float(v))
        done = terminated or truncated
    summary = env.backend.summary()
    horizon = env.scenario.horizon_s
    # Batch work still queued at the end counts against its deadline when the waiting-time
    # estimate says it would miss it (deferring work past the horizon is not free).
    at_risk = round(info["raw"]["batch.at_risk"])
    batch_attainment = attainment_with_risk(summary["batch"], at_risk)
    met = sum(c.met for c in summary.values())
    met_tokens = totals["slo_met_work"] / max(env.reward_weights["slo_met_work"], 1e-12) * 1000.0
    gpu_hours = float(info["gpu_hours"])
    row: dict[str, Any] = {
        "agent": agent,
        "scenario": scenario,
        "seed": seed,
        "interactive_attainment": info["interactive_attainment"],
        "batch_attainment": batch_attainment,
        "batch_at_risk": at_risk,
        "interactive_arrived": info["interactive_arrived"],
        "batch_arrived": info["batch_arrived"],
        "slo_met_requests": met,
        "gpu_hours": gpu_hours,
        "goodput_tokens_per_s": met_tokens / horizon,
        "gpu_hours_per_1k_met": gpu_hours / (met / 1000.0) if met else math.inf,
        "reward": reward_sum,
        "reward_slo_met_work": totals["slo_met_work"],
        "reward_gpu_cost": totals["gpu_cost"],
        "reward_violation": totals["violation"],
        "reward_churn": totals["churn"],
        "scale_actions": scale_actions,
        "steps": steps,
    }
    params = getattr(policy, "params", None)
    row_params = params() if callable(params) else {}
    env.close()
    ep = Episode(row, series, time.perf_counter() - t0)
    ep.row["_params"] = row_params
    return ep


def _portable(spec: str) -> str:
    """An agent or scenario spec whose path (``ppo:PATH``, a ``.toml``) is absolute.

    Workers (spawned processes, Ray workers, other nodes) may not share this process's
    working directory; bundled names pass through.
    """
    if spec.startswith("ppo:"):
        return f"ppo:{Path(spec[4:]).resolve()}"
    return str(Path(spec).resolve()) if spec.endswith(".toml") else spec


def episode_task(
    agent: str, scenario: str, seed: int, env_kwargs: dict[str, Any] | None
) -> Episode:
    """``run_episode`` with positional arguments: one task of an evaluation grid."""
    return run_episode(agent, scenario, seed, env_kwargs=env_kwargs)


class EvaluationFailed(RuntimeError):
    """Some episodes raised; every other episode's outputs were written."""

    def __init__(self, failures: list[dict[str, Any]], total: int, summary: list[dict[str, Any]]):
        self.failures = failures
        self.summary = summary
        lines = [f"{len(failures)} of {total} episodes failed:"]
        lines += [
            f"  agent {f['agent']}, scenario {f['scenario']}, seed {f['seed']}: {f['error']}"
            for f in failures
        ]
        super().__init__("\n".join(lines))


def slug(agent: str) -> str:
    """A file-name-safe form of an agent spec (``ppo:runs/x`` -> ``ppo_runs_x``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", agent).strip("_")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(round(v, 9))
    return str(v)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_fmt(r[c]) for c in COLUMNS])


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (scenario, agent), with ratios to Chiron's means."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["agent"]), []).append(r)
    out: list[dict[str, Any]] = []
    for (scenario, agent), rs in groups.items():
        entry: dict[str, Any] = {"scenario": scenario, "agent": agent, "seeds": len(rs)}
        for key, _, _ in TABLE_METRICS:
            vals = np.array([float(r[key]) for r in rs])
            entry[f"{key}_mean"] = float(vals.mean())
            entry[f"{key}_std"] = float(vals.std())
        out.append(entry)
    for entry in out:
        ref = next(
            (e for e in out if e["scenario"] == entry["scenario"] and e["agent"] == "chiron"), None
        )
        for key, _, _ in TABLE_METRICS:
            base = ref[f"{key}_mean"] if ref else math.nan
            mean = entry[f"{key}_mean"]
            entry[f"{key}_vs_chiron"] = mean / base if base and math.isfinite(base) else None
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    """One table per scenario: mean +- std over seeds, and the ratio to Chiron."""
    lines: list[str] = []
    for scenario in dict.fromkeys(e["scenario"] for e in summary):
        rows = [e for e in summary if e["scenario"] == scenario]
        lines.append(f"### {scenario} ({rows[0]['seeds']} seeds)")
        lines.append("")
        head = "| agent | " + " | ".join(label for _, label, _ in TABLE_METRICS) + " |"
        lines.append(head)
        lines.append("|---" * (len(TABLE_METRICS) + 1) + "|")
        for e in rows:
            cells = []
            for key, _, fmt in TABLE_METRICS:
                cell = f"{fmt.format(e[f'{key}_mean'])} +- {fmt.format(e[f'{key}_std'])}"
                ratio = e[f"{key}_vs_chiron"]
                if e["agent"] != "chiron" and ratio is not None:
                    cell += f" ({ratio:.2f}x)"
                cells.append(cell)
            lines.append(f"| {e['agent']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Ratios in parentheses are to Chiron's mean on the same scenario and seeds.")
    return "\n".join(lines) + "\n"


def _figure(ep: Episode, title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = ep.series
    t = np.asarray(s["t"]) / 60.0
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for p in POOL_NAMES:
        axes[0].step(t, s[f"cluster/instances_{p}"], where="post", label=p)
        axes[1].step(t, s[f"cluster/batch_cap_{p}"], where="post", label=p)
    axes[0].set_ylabel("instances")
    axes[1].set_ylabel("batch cap")
    for c in CLASS_NAMES:
        axes[2].plot(t, s[f"queue/{c}"], label=c)
    axes[2].set_ylabel("queued requests")
    axes[2].set_yscale("symlog")
    axes[3].plot(t, s["slo/interactive_ttft_p95_over_slo"], label="interactive TTFT p95 / SLO")
    axes[3].plot(t, s["slo/interactive_itl_p95_over_slo"], label="interactive ITL p95 / SLO")
    axes[3].plot(t, s["slo/batch_wait_over_slack"], label="batch wait / slack")
    axes[3].axhline(1.0, color="black", lw=0.8)
    axes[3].set_ylabel("vs SLO")
    axes[3].set_yscale("symlog", linthresh=1.0)
    axes[2].yaxis.set_major_formatter(_plain_ticks())
    axes[3].yaxis.set_major_formatter(_plain_ticks())
    axes[3].set_xlabel("simulated minutes")
    for ax in axes:
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _plain_ticks() -> Any:
    """Tick labels such as ``0.5``, ``10`` and ``1,000`` (a symlog axis's default formatter
    writes ``1.59545x10^0``)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 10 or v == 0 else f"{v:g}")


def _label(agent: str) -> str:
    """A short axis label: ``ppo:runs/tune/best`` -> ``ppo:best``."""
    return f"ppo:{Path(agent[4:]).name}" if agent.startswith("ppo:") else agent


def _compare_plot(summary: list[dict[str, Any]], scenario: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in summary if e["scenario"] == scenario]
    names = [_label(e["agent"]) for e in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, key, label in zip(
        axes[:3],
        ("interactive_attainment", "batch_attainment", "gpu_hours"),
        ("interactive attainment", "batch attainment", "GPU-hours"),
        strict=True,
    ):
        means = [e[f"{key}_mean"] for e in rows]
        stds = [e[f"{key}_std"] for e in rows]
        ax.bar(
            range(len(names)),
            means,
            yerr=stds,
            color=["C3" if n == "chiron" else "C0" for n in names],
        )
        ax.set_xticks(range(len(names)), names)
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    # The view an autoscaler comparison is read in: attainment against cost, one point per
    # agent, error bars over seeds (up and to the left is better).
    ax = axes[3]
    for i, (e, n) in enumerate(zip(rows, names, strict=True)):
        ax.errorbar(
            e["gpu_hours_mean"],
            e["interactive_attainment_mean"],
            xerr=e["gpu_hours_std"],
            yerr=e["interactive_attainment_std"],
            fmt="*" if n == "chiron" else "o",
            ms=10 if n == "chiron" else 5,
            color="C3" if n == "chiron" else f"C{i % 10}",
            capsize=2,
        )
        ax.annotate(n, (e["gpu_hours_mean"], e["interactive_attainment_mean"]), fontsize=6)
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("interactive attainment")
    ax.set_title("attainment vs cost")
    fig.suptitle(scenario)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _tensorboard(ep: Episode, logdir: Path, scenario_text: str, figure: Any) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    t = ep.series["t"]
    for tag in TB_SCALARS:
        for step, v in zip(t, ep.series.get(tag, []), strict=False):
            writer.add_scalar(tag, v, global_step=round(step), walltime=0.0)
    last = round(t[-1]) if t else 0
    for tag in TB_EPISODE:
        v = ep.row[tag.split("/", 1)[1]]
        writer.add_scalar(tag, float(v), global_step=last, walltime=0.0)
    writer.add_text("config/scenario", scenario_text, global_step=0, walltime=0.0)
    params = json.dumps(ep.row.get("_params", {}), indent=1, sort_keys=True)
    writer.add_text(
        "config/agent",
        f"{ep.row['agent']}\n\n    " + params.replace("\n", "\n    "),
        global_step=0,
        walltime=0.0,
    )
    writer.add_figure("episode/summary", figure, global_step=last, close=False, walltime=0.0)
    writer.close()


def evaluate(
    agents: list[str],
    scenarios: list[str],
    seeds: list[int],
    out: Path,
    *,
    plots: bool = True,
    tensorboard: bool = True,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    on_episode: Callable[[Episode], None] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run the grid and write every output; return the summary rows (the table's rows).

    ``executor`` is ``auto``, ``local``, ``process`` or ``ray`` (``agents/executors.py``). When
    episodes raise, the others' outputs are written, with ``failures.json``, and then
    ``EvaluationFailed`` names each failed (agent, scenario, seed).
    """
    import scenarios as bundled

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, a, k) for s in scenarios for a in agents for k in seeds]
    from tqdm import tqdm

    episodes: dict[int, Episode] = {}
    failures: dict[int, dict[str, Any]] = {}
    calls = [(_portable(a), _portable(s), k, env_kwargs) for s, a, k in jobs]
    outcomes = run_tasks(episode_task, calls, executor=executor, ray_address=ray_address)
    bar = tqdm(outcomes, total=len(jobs), disable=not progress, unit="episode", dynamic_ncols=True)
    for outcome in bar:
        scenario, agent, seed = jobs[outcome.index]
        bar.set_description(f"{scenario} {agent} seed {seed}")
        if not outcome.ok:
            failures[outcome.index] = {
                "agent": agent,
                "scenario": scenario,
                "seed": seed,
                "error": outcome.error,
            }
            if progress:
                bar.write(
                    f"episode failed: agent {agent}, scenario {scenario}, seed {seed}: "
                    f"{outcome.error}",
                    file=sys.stderr,
                )
            continue
        ep: Episode = outcome.value
        ep.row["agent"], ep.row["scenario"] = agent, scenario  # as given, not as resolved
        episodes[outcome.index] = ep
        if plots or tensorboard:
            import matplotlib.pyplot as plt

            fig = _figure(ep, f"{agent} on {scenario}, seed {seed}")
            if plots:
                d = out / "plots" / scenario
                d.mkdir(parents=True, exist_ok=True)
                fig.savefig(d / f"{slug(agent)}_seed{seed}.png", dpi=80)
            if tensorboard:
                path = bundled.path(scenario) if scenario in bundled.names() else Path(scenario)
                text = "    " + path.read_text().replace("\n", "\n    ")
                _tensorboard(ep, out / "tb" / scenario / slug(agent) / f"seed{seed}", text, fig)
            plt.close(fig)
        if on_episode:
            on_episode(ep)
    order = sorted(episodes)  # call order, whatever order they finished in
    rows = [episodes[i].row for i in order]
    wall = [episodes[i].wall_s for i in order]
    write_csv(out / "results.csv", rows)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    for r, w in zip(clean, wall, strict=True):
        r["wall_s"] = round(w, 3)
    (out / "results.json").write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n")
    summary = summarise(rows)
    (out / "results.md").write_text(markdown(summary))
    if plots:
        (out / "plots").mkdir(exist_ok=True)
        for scenario in scenarios:
            if any(e["scenario"] == scenario for e in summary):
                _compare_plot(summary, scenario, out / "plots" / f"compare_{scenario}.png")
    failed = [failures[i] for i in sorted(failures)]
    path = out / "failures.json"
    if failed:
        path.write_text(json.dumps(failed, indent=1) + "\n")
        raise EvaluationFailed(failed, len(jobs), summary)
    path.unlink(missing_ok=True)
    return summary
