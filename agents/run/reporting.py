"""What an evaluation writes: the results table, its markdown summary, figures and TensorBoard.

Pure functions of episodes' rows and time series (``agents/run/episode.py``), so that the files are
the same whichever executor ran the episodes:

- ``write_csv`` (``results.csv``: ``COLUMNS``, deterministic for a given agent, scenario, seed);
- ``summarise`` and ``markdown`` (mean +- std over seeds, ratio to Chiron);
- ``episode_figure`` (instances, caps, queues and latency against the SLO over time) and
  ``compare_plot`` (bars, and attainment against GPU-hours);
- ``tensorboard`` (``TB_SCALARS`` against simulated seconds, ``TB_EPISODE``, the figure, and
  the scenario and agent parameters as text).

matplotlib and torch's TensorBoard writer are imported when a figure or run is written.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from agents import split_ppo_spec
from agents.run.episode import Episode
from chiron_gym.sim import ALL_POOL_NAMES, CLASS_NAMES

# Columns of results.csv, in order (all deterministic for a given agent, scenario and seed).
COLUMNS = (
    "agent",
    "scenario",
    "seed",
    "interactive_attainment",
    "batch_attainment",
    "interactive_at_risk",
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
    "reward_at_risk",
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
    "reward/at_risk",
)
# the disaggregated environment's too (an aggregated episode has none of them)
TB_SCALARS_PD = (
    "cluster/instances_prefill",
    "cluster/instances_decode",
    "cluster/batch_cap_prefill",
    "cluster/batch_cap_decode",
    "queue/prefill_prompt_tokens",
    "queue/kv_transfers",
)
TB_EPISODE = tuple(f"episode/{c}" for c in COLUMNS[3:])


def slug(agent: str) -> str:
    """A file-name-safe form of an agent spec (``ppo:runs/x`` -> ``ppo_runs_x``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", agent).strip("_")


def fmt(v: Any) -> str:
    """A value as ``results.csv`` writes it (floats to 9 decimals, as repr)."""
    if isinstance(v, float):
        return repr(round(v, 9))
    return str(v)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([fmt(r[c]) for c in COLUMNS])


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


def episode_figure(series: dict[str, list[float]], title: str) -> Any:
    """The episode's time series: instances and caps per pool, queues, latency against SLO."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = series
    t = np.asarray(s["t"]) / 60.0
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for p in (p for p in ALL_POOL_NAMES if f"cluster/instances_{p}" in s):
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


def short_label(agent: str) -> str:
    """A short axis label: ``ppo:runs/tune/best`` -> ``ppo:best`` (options kept:
    ``ppo:best[defer_above=30]``)."""
    if not agent.startswith("ppo:"):
        return agent
    path = split_ppo_spec(agent)[0]
    return f"ppo:{Path(path).name}{agent[4 + len(path) :]}"


def compare_plot(summary: list[dict[str, Any]], scenario: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in summary if e["scenario"] == scenario]
    names = [short_label(e["agent"]) for e in rows]
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


def tensorboard(ep: Episode, logdir: Path, scenario_text: str, figure: Any) -> None:
    """One episode's TensorBoard run. Events carry the real time they were written (TensorBoard
    shows it); ``tb_content`` reads a run without it, for checks of determinism."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(logdir))
    t = ep.series["t"]
    for tag in (*TB_SCALARS, *(g for g in TB_SCALARS_PD if g in ep.series)):
        for step, v in zip(t, ep.series.get(tag, []), strict=False):
            writer.add_scalar(tag, v, global_step=round(step))
    last = round(t[-1]) if t else 0
    for tag in TB_EPISODE:
        v = ep.row[tag.split("/", 1)[1]]
        writer.add_scalar(tag, float(v), global_step=last)
    writer.add_text("config/scenario", scenario_text, global_step=0)
    params = json.dumps(ep.row.get("_params", {}), indent=1, sort_keys=True)
    writer.add_text(
        "config/agent",
        f"{ep.row['agent']}\n\n    " + params.replace("\n", "\n    "),
        global_step=0,
    )
    writer.add_figure("episode/summary", figure, global_step=last, close=False)
    writer.close()


def tb_content(logdir: Path) -> list[bytes]:
    """Every event under ``logdir`` (its event files in name order, then in file order) as
    serialized bytes without its wall time: what two runs of one episode must share byte for
    byte, while their clocks differ. The file-version header, which carries only a time, is
    left out."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for run in sorted({f.parent for f in logdir.rglob("events.out.tfevents.*")}):
        for path in sorted(run.glob("events.out.tfevents.*")):
            for event in EventFileLoader(str(path)).Load():
                if event.HasField("file_version"):
                    continue
                event.wall_time = 0.0
                out.append(
                    str(run.relative_to(logdir)).encode() + b"\0" + event.SerializeToString()
                )
    return out


PARAMS = "params.jsonl"  # each episode's ``_params`` (the planner's search, departures)


def write_params(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON line per episode: its key and its ``_params`` (``results.csv`` has no room)."""
    with path.open("w") as f:
        for r in sorted(rows, key=lambda r: (r["agent"], r["scenario"], int(r["seed"]))):
            key = {"agent": r["agent"], "scenario": r["scenario"], "seed": int(r["seed"])}
            f.write(json.dumps({**key, "params": r.get("_params", {})}, sort_keys=True) + "\n")


def read_params(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``write_params``'s file by (agent, scenario, seed as text); empty if there is none."""
    if not path.is_file():
        return {}
    out = {}
    for text in path.read_text().splitlines():
        d = json.loads(text)
        out[(d["agent"], d["scenario"], str(d["seed"]))] = d["params"]
    return out


def no_nan(v: Any) -> Any:
    """NaN (an undefined score or attainment) as null: strict JSON."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: no_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [no_nan(x) for x in v]
    return v


__all__ = [
    "COLUMNS",
    "PARAMS",
    "TABLE_METRICS",
    "TB_EPISODE",
    "TB_SCALARS",
    "TB_SCALARS_PD",
    "compare_plot",
    "episode_figure",
    "markdown",
    "no_nan",
    "read_params",
    "short_label",
    "slug",
    "summarise",
    "tensorboard",
    "write_csv",
    "write_params",
]
