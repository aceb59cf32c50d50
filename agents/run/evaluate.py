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

``results.csv`` grows as episodes finish (a row each, flushed), so an interrupt or a crash keeps
every finished episode; ``resume=True`` (``chiron evaluate --resume``) skips the episodes already
in it and rebuilds every output from all the rows. At the end it is rewritten in the grid's order
(scenario, agent, seed), the same bytes as a run that was never interrupted. Ctrl-C stops the
grid, writes the tables of what finished and raises ``EvaluationInterrupted``. ``out`` is checked
(a folder, writable) before any episode runs.

Episodes (``agents/run/episode.py``) run as independent tasks (``agents/run/executors.py``: in this
process, a local process pool or Ray); every file is written here, in the driver, from the
episodes' rows and series (``agents/run/reporting.py``), so the outputs are the same whichever
executor ran them.

Needs the ``rl`` extra (torch's TensorBoard writer, matplotlib, tqdm).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.run import reporting
from agents.run.episode import Episode
from agents.run.executors import run_tasks
from agents.run.tasks import episode_task
from agents.spec import portable
from chiron_gym.config import InputError


class OutputError(InputError):
    """The output folder cannot be used (a file, not writable); nothing ran."""


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C: the finished episodes' rows and tables were kept (the message says where)."""

    def __init__(self, kept: int, total: int, out: Path) -> None:
        self.kept = kept
        super().__init__(
            f"interrupted: {kept} of {total} episodes are in {out / 'results.csv'} (tables "
            f"rebuilt from them); rerun with --resume to run the other {total - kept}"
        )


def check_out(out: Path) -> None:
    """``out`` is (or can be made) a writable folder; ``OutputError`` naming it otherwise."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: expected a folder, found a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".chiron-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write there ({e.strerror})") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``results.csv`` (values as written; ``summarise`` reads them as numbers)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and list(rows[0]) != list(reporting.COLUMNS):
        raise OutputError(f"{path}: not a results.csv of this version (its columns differ)")
    return rows


def typed_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``results.csv`` row with its numbers as numbers."""
    return {k: _typed(v) for k, v in row.items()}


def _typed(value: Any) -> Any:
    """A value read back from ``results.csv`` as the number it was written from, if it was."""
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


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
    resume: bool = False,
    given: Path | None = None,
    keep_others: bool = False,
) -> list[dict[str, Any]]:
    """Run the grid and write every output; return the summary rows (the table's rows).

    ``executor`` is ``auto``, ``local``, ``process`` or ``ray`` (``agents/run/executors.py``). When
    episodes raise, the others' outputs are written, with ``failures.json``, and then
    ``EvaluationFailed`` names each failed (agent, scenario, seed). ``resume``: keep the rows of
    ``out/results.csv`` and run only the episodes it lacks; with ``keep_others`` its rows of
    episodes outside this grid stay in the file too, from the first write on (``chiron
    benchmark``'s phases share one file), though not in the summary. ``given``: episodes the
    planner may start from (``agents/plans.py``).
    """
    check_out(out)
    jobs = [(s, a, k) for s in scenarios for a in agents for k in seeds]
    csv_path = out / "results.csv"
    done: dict[int, dict[str, Any]] = {}  # job index -> a row kept from an earlier run
    others: list[dict[str, Any]] = []  # rows of episodes outside this grid (``keep_others``)
    if resume and csv_path.is_file():
        where = {(s, a, str(k)): i for i, (s, a, k) in enumerate(jobs)}
        for row in read_rows(csv_path):
            i = where.get((row["scenario"], row["agent"], row["seed"]))
            if i is not None:
                done[i] = row
            elif keep_others:
                others.append(row)
    with csv_path.open("w", newline="") as f:  # the kept rows, then each episode as it ends
        writer = csv.writer(f)
        writer.writerow(reporting.COLUMNS)
        for row in [*others, *(done[i] for i in sorted(done))]:
            writer.writerow([row[c] for c in reporting.COLUMNS])
        f.flush()
        episodes: dict[int, Episode] = {}
        failures: dict[int, dict[str, Any]] = {}
        interrupted = False
        try:
            _run(jobs, done, episodes, failures, (f, writer), out, plots, tensorboard,
                 progress, env_kwargs, on_episode, executor, ray_address, given)  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
    rows_by_job: dict[int, dict[str, Any]] = {i: {**r} for i, r in done.items()}
    rows_by_job.update({i: ep.row for i, ep in episodes.items()})
    order = sorted(rows_by_job)  # the grid's order, whatever order they finished in
    rows = [rows_by_job[i] for i in order]
    reporting.write_csv(csv_path, [*others, *rows])
    clean = [{k: _typed(v) for k, v in r.items() if not k.startswith("_")} for r in rows]
    for i, r in zip(order, clean, strict=True):
        if i in episodes:
            r["wall_s"] = round(episodes[i].wall_s, 3)
    (out / "results.json").write_text(json.dumps(clean, indent=1, sort_keys=True) + "\n")
    summary = reporting.summarise(rows)
    (out / "results.md").write_text(reporting.markdown(summary))
    if plots and not interrupted:
        (out / "plots").mkdir(exist_ok=True)
        for scenario in scenarios:
            if any(e["scenario"] == scenario for e in summary):
                reporting.compare_plot(
                    summary, scenario, out / "plots" / f"compare_{reporting.slug(scenario)}.png"
                )
    if interrupted:
        raise EvaluationInterrupted(len(rows), len(jobs), out)
    failed = [failures[i] for i in sorted(failures)]
    path = out / "failures.json"
    if failed:
        path.write_text(json.dumps(failed, indent=1) + "\n")
        raise EvaluationFailed(failed, len(jobs), summary)
    path.unlink(missing_ok=True)
    return summary


def _run(
    jobs: list[tuple[str, str, int]],
    done: dict[int, dict[str, Any]],
    episodes: dict[int, Episode],
    failures: dict[int, dict[str, Any]],
    sink: tuple[Any, Any],
    out: Path,
    plots: bool,
    tensorboard: bool,
    progress: bool,
    env_kwargs: dict[str, Any] | None,
    on_episode: Callable[[Episode], None] | None,
    executor: str,
    ray_address: str | None,
    given: Path | None,
) -> None:
    """Run the jobs not ``done``; put each finished episode (or failure) in ``episodes`` (or
    ``failures``) by job index as it ends, append its row to the CSV ``sink`` (file, writer),
    flushed, and write its plot and TensorBoard run. An interrupt leaves what finished."""
    from tqdm import tqdm

    import scenarios as bundled

    f, writer = sink
    todo = [i for i in range(len(jobs)) if i not in done]
    if not todo:
        return
    shared = None if given is None else str(given.resolve())
    calls = [
        (portable(jobs[i][1]), portable(jobs[i][0]), jobs[i][2], env_kwargs, shared) for i in todo
    ]
    outcomes = run_tasks(episode_task, calls, executor=executor, ray_address=ray_address)
    bar = tqdm(outcomes, total=len(todo), disable=not progress, unit="episode", dynamic_ncols=True)
    for outcome in bar:
        index = todo[outcome.index]
        scenario, agent, seed = jobs[index]
        bar.set_description(f"{scenario} {agent} seed {seed}")
        if not outcome.ok:
            failures[index] = {
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
        episodes[index] = ep
        writer.writerow([reporting.fmt(ep.row[c]) for c in reporting.COLUMNS])
        f.flush()
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
