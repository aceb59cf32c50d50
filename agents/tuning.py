"""Per-workload tuning, one procedure for every tuned agent (``llumnix-tuned``, ``chiron-tuned``).

A grid search on the environment's reward on seeds no evaluation uses (``TUNE_SEEDS``) of the
scenario itself, with the same budget for every agent (``GRID_POINTS`` points), and widened
where the best point sits on an edge: an axis whose best value is its first or last is extended
by one more step that way (and the new points scored), until the best is inside the grid or at a
bound of the parameter's own domain (a batch cap cannot exceed the engine's ``max_num_seqs``, a
headroom cannot be negative), at most ``MAX_WIDEN`` times per axis. Equal scores go to the point
furthest inside the grid (a rule that saturates, such as a scale-up threshold past which Llumnix
always adds, scores the same at every larger value). A choice on an edge of the final grid is
recorded (``at_bound``) so that tables can say so.

Tables ship in ``agents/tuned/<agent>.json``: one entry per bundled scenario, with the grid as
widened, every point's score, the seeds and the commit; a scenario missing from the table, or
whose description changed, is tuned when the agent is first built for it (once per process).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.scenario import Scenario

TUNED = Path(__file__).resolve().parent / "tuned"
TUNE_SEEDS = (1000,)
GRID_POINTS = 24  # the grid every tuned agent starts from has this many points
MAX_WIDEN = 8


@dataclass(frozen=True)
class Axis:
    """One tuned parameter: its starting values (ascending), how a value is extended beyond the
    grid (``factor``: the next value is the last x factor, or the first / factor; integer axes
    step by at least 1) and the bounds of its domain (None: unbounded)."""

    name: str
    values: tuple[float, ...]
    factor: float = 2.0
    low: float | None = None
    high: float | None = None
    integer: bool = False

    def beyond(self, value: float, up: bool) -> float | None:
        """The next value past ``value`` (None at a domain bound)."""
        nxt = value * self.factor if up else value / self.factor
        if self.integer:
            nxt = max(round(nxt), int(value) + 1) if up else min(round(nxt), int(value) - 1)
        if (self.high is not None and nxt > self.high) or (self.low is not None and nxt < self.low):
            bound = self.high if up else self.low
            return None if bound is None or bound == value else bound
        return nxt


Point = tuple[float, ...]
Scorer = Callable[[Scenario, dict[str, float], int], float]


def _score_point(task: tuple[Scorer, Scenario, tuple[str, ...], Point]) -> float:
    scorer, scenario, names, point = task
    params = dict(zip(names, point, strict=True))
    return float(np.mean([scorer(scenario, params, s) for s in TUNE_SEEDS]))


def grid_search(
    scorer: Scorer,
    scenario: Scenario,
    axes: list[Axis],
    *,
    label: str,
    workers: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """The best point of ``axes``' grid (widened at its edges) by mean reward on TUNE_SEEDS."""
    from tqdm import tqdm

    names = tuple(a.name for a in axes)
    values = [list(a.values) for a in axes]
    scores: dict[Point, float] = {}
    bar = tqdm(desc=f"{label}: tuning {scenario.name}", disable=not progress, unit="point")

    def score_all(points: list[Point]) -> None:
        todo = [p for p in points if p not in scores]
        tasks = [(scorer, scenario, names, p) for p in todo]
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(workers) as ex:
                results = list(ex.map(_score_point, tasks))
        else:
            results = [_score_point(t) for t in tasks]
        for p, r in zip(todo, results, strict=True):
            scores[p] = r
        bar.update(len(todo))

    score_all([tuple(map(float, p)) for p in product(*values)])
    widened = [0] * len(axes)
    at_bound: list[str] = []

    def edges(p: Point) -> int:
        return sum(len(v) > 1 and p[i] in (v[0], v[-1]) for i, v in enumerate(values))

    while True:
        # the best score; among equal scores (a rule that saturates: past some threshold it
        # always adds) the point furthest inside the grid, then the smallest
        top = max(scores.values())
        best = min((p for p in scores if scores[p] == top), key=lambda p: (edges(p), p))
        grew = False
        for i, ax in enumerate(axes):
            vals = values[i]
            for up, end in ((True, vals[-1]), (False, vals[0])):
                if best[i] != end or widened[i] >= MAX_WIDEN:
                    continue
                nxt = ax.beyond(end, up)
                if nxt is None:
                    continue
                vals.insert(len(vals) if up else 0, nxt)
                widened[i] += 1
                grew = True
        if not grew:
            break
        score_all([tuple(map(float, p)) for p in product(*values)])
    bar.close()
    for i, ax in enumerate(axes):
        if best[i] in (values[i][0], values[i][-1]):
            at_bound.append(ax.name)
    chosen: dict[str, Any] = {
        n: (int(v) if ax.integer else v) for n, v, ax in zip(names, best, axes, strict=True)
    }
    return {
        **chosen,
        "tune_reward": round(scores[best], 3),
        "grid": {n: v for n, v in zip(names, values, strict=True)},
        "points": len(scores),
        "at_bound": at_bound,
    }


class TunedTable:
    """One tuned agent's shipped table and its in-process cache."""

    def __init__(self, agent: str, what: str, tune: Callable[[Scenario], dict[str, Any]]) -> None:
        self.agent = agent
        self.what = what
        self.path = TUNED / f"{agent}.json"
        self.tune = tune
        self._cache: dict[str, dict[str, Any]] = {}

    def params(self, scenario: Scenario | None) -> dict[str, Any]:
        """The shipped entry for ``scenario``, else tuned now (cached in this process)."""
        if scenario is None:
            raise ValueError(f"{self.agent} needs the scenario in its AgentContext")
        key = f"{scenario.name}|{scenario.description}"
        if key in self._cache:
            return self._cache[key]
        if self.path.is_file():
            entry = json.loads(self.path.read_text()).get("scenarios", {}).get(scenario.name)
            if entry is not None and entry.get("description") == scenario.description:
                self._cache[key] = dict(entry)
                return self._cache[key]
        self._cache[key] = self.tune(scenario)
        return self._cache[key]

    def write(self, scenarios: list[Scenario], commit: str) -> dict[str, Any]:
        """Tune every scenario and merge it into the table (with provenance)."""
        out: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        out["provenance"] = {
            "what": self.what,
            "procedure": "agents/tuning.py: grid search with widening, mean env reward",
            "seeds": list(TUNE_SEEDS),
            "grid_points": GRID_POINTS,
        }
        entries = out.setdefault("scenarios", {})
        for sc in scenarios:
            entries[sc.name] = {**self.tune(sc), "description": sc.description, "commit": commit}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(out, indent=2) + "\n")
        return out


__all__ = ["GRID_POINTS", "TUNE_SEEDS", "Axis", "TunedTable", "grid_search"]
