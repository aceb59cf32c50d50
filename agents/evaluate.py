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

Episodes (``agents/episode.py``) run as independent tasks (``agents/executors.py``: in this
process, a local process pool or Ray); every file is written here, in the driver, from the
episodes' rows and series (``agents/reporting.py``), so the outputs are the same whichever
executor ran them.

Needs the ``rl`` extra (torch's TensorBoard writer, matplotlib, tqdm).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents import reporting
from agents.episode import Episode, episode_task
from agents.executors import run_tasks


def _portable(spec: str) -> str:
    """An agent or scenario spec whose path (``ppo:PATH``, a ``.toml``) is absolute.

    Workers (spawned processes, Ray workers, other nodes) may not share this process's
    working directory; bundled names pass through.
    """
    if spec.startswith("ppo:"):
        return f"ppo:{Path(spec[4:]).resolve()}"
    return str(Path(spec).resolve()) if spec.endswith(".toml") else spec


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

            fig = reporting.episode_figure(ep.series, f"{agent} on {scenario}, seed {seed}")
            # folders named by a safe slug of the scenario (it may be a path or a family draw)
            where = reporting.slug(scenario)
            if plots:
                d = out / "plots" / where
                d.mkdir(parents=True, exist_ok=True)
                fig.savefig(d / f"{reporting.slug(agent)}_seed{seed}.png", dpi=80)
            if tensorboard:
                path = bundled.path(scenario) if scenario in bundled.names() else Path(scenario)
                text = "    " + (
                    path.read_text().replace("\n", "\n    ") if path.is_file() else scenario
                )
                reporting.tensorboard(
                    ep, out / "tb" / where / reporting.slug(agent) / f"seed{seed}", text, fig
                )
            plt.close(fig)
        if on_episode:
            on_episode(ep)
    order = sorted(episodes)  # call order, whatever order they finished in
    rows = [episodes[i].row for i in order]
    wall = [episodes[i].wall_s for i in order]
    reporting.write_csv(out / "results.csv", rows)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    for r, w in zip(clean, wall, strict=True):
        r["wall_s"] = round(w, 3)
    (out / "results.json").write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n")
    summary = reporting.summarise(rows)
    (out / "results.md").write_text(reporting.markdown(summary))
    if plots:
        (out / "plots").mkdir(exist_ok=True)
        for scenario in scenarios:
            if any(e["scenario"] == scenario for e in summary):
                reporting.compare_plot(
                    summary, scenario, out / "plots" / f"compare_{reporting.slug(scenario)}.png"
                )
    failed = [failures[i] for i in sorted(failures)]
    path = out / "failures.json"
    if failed:
        path.write_text(json.dumps(failed, indent=1) + "\n")
        raise EvaluationFailed(failed, len(jobs), summary)
    path.unlink(missing_ok=True)
    return summary
