"""``llumnix-tuned``: Llumnix's ``avg_load`` autoscaler with thresholds and batch size tuned per
workload, as the Chiron paper's second baseline.

Tuning is a grid search (``GRID``) on the env's reward, on seeds no evaluation uses
(``TUNE_SEEDS``), of the same scenario. Results for the bundled scenarios ship in
``agents/tuned/llumnix.json`` (``write_table([scenario, ...], commit)`` tunes and merges entries,
with the commit; there is no CLI command for it); a scenario not in the table, or whose
description changed, is tuned when the agent is first built for it (once per process).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import RULE_MAX_STEP, VLLM_DEFAULT_MAX_NUM_SEQS
from agents.baselines import LlumnixAgent, LlumnixParams
from chiron_gym.envs import AgentContext
from chiron_gym.envs.actions import HALVE, KEEP
from chiron_gym.scenario import Scenario

TABLE = Path(__file__).resolve().parent / "tuned" / "llumnix.json"
TUNE_SEEDS = (1000,)
# (scale_up_below, scale_down_above / scale_up_below, batch cap): freeness in decode steps; the
# untuned policy's ratio of the two thresholds (60 / 10) is kept
GRID: tuple[tuple[float, float, int], ...] = tuple(
    (up, 6.0, cap) for up in (5.0, 10.0, 20.0, 40.0) for cap in (256, 64)
)
_CACHE: dict[str, dict[str, Any]] = {}


class LlumnixTunedAgent(LlumnixAgent):
    """Llumnix with per-workload thresholds and a batch cap reached by halving from 256."""

    name = "llumnix-tuned"

    def __init__(self, ctx: AgentContext, tuned: dict[str, Any] | None = None) -> None:
        if tuned is None:
            if ctx.scenario is None:
                raise ValueError("llumnix-tuned needs the scenario in its AgentContext")
            tuned = tuned_params(ctx.scenario)
        self.target_cap = int(tuned["batch_cap"])
        super().__init__(
            ctx,
            LlumnixParams(
                scale_up_below=float(tuned["scale_up_below"]),
                scale_down_above=float(tuned["scale_down_above"]),
            ),
        )

    def params(self) -> dict[str, Any]:
        return {**asdict(self.p), "batch_cap": self.target_cap}

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        deltas, _ = super().decide(raw)
        caps = [
            HALVE if pool.exists and pool.batch_cap >= 2 * self.target_cap else KEEP
            for pool in self.pools(raw)
        ]
        return deltas, caps


def _score(scenario: Scenario, up: float, mult: float, cap: int, seed: int) -> float:
    from agents.run.episode import play  # agents.run.episode imports this package's registry
    from chiron_gym.envs import AutoscaleEnv

    env = AutoscaleEnv(
        scenario,
        action_mode="full",
        max_step_change=RULE_MAX_STEP,
        initial_batch_cap=VLLM_DEFAULT_MAX_NUM_SEQS,
    )
    tuned = {"scale_up_below": up, "scale_down_above": up * mult, "batch_cap": cap}
    run = play(env, lambda ctx: LlumnixTunedAgent(ctx, tuned), seed)
    env.close()
    return run.reward


def tune(scenario: Scenario, progress: bool = True) -> dict[str, Any]:
    """Grid-search the thresholds and cap on ``TUNE_SEEDS``; the best by mean reward."""
    from tqdm import tqdm

    best: tuple[float, dict[str, Any]] | None = None
    grid = tqdm(GRID, desc=f"llumnix-tuned: tuning {scenario.name}", disable=not progress)
    for up, mult, cap in grid:
        score = float(np.mean([_score(scenario, up, mult, cap, s) for s in TUNE_SEEDS]))
        if best is None or score > best[0]:
            best = (
                score,
                {
                    "scale_up_below": up,
                    "scale_down_above": up * mult,
                    "batch_cap": cap,
                    "tune_reward": round(score, 3),
                },
            )
    assert best is not None
    return best[1]


def _key(scenario: Scenario) -> str:
    return f"{scenario.name}|{scenario.description}"


def tuned_params(scenario: Scenario) -> dict[str, Any]:
    """The shipped table's entry for ``scenario``, else tuned now (cached in this process)."""
    key = _key(scenario)
    if key in _CACHE:
        return _CACHE[key]
    if TABLE.is_file():
        table = json.loads(TABLE.read_text())
        entry = table.get("scenarios", {}).get(scenario.name)
        if entry is not None and entry.get("description") == scenario.description:
            _CACHE[key] = dict(entry)
            return _CACHE[key]
    _CACHE[key] = tune(scenario)
    return _CACHE[key]


def write_table(scenarios: list[Scenario], commit: str) -> dict[str, Any]:
    """Tune every scenario and merge it into ``TABLE`` (with provenance)."""
    out: dict[str, Any] = json.loads(TABLE.read_text()) if TABLE.is_file() else {}
    out["provenance"] = {
        "what": "llumnix-tuned thresholds and batch cap: grid search on the env reward",
        "grid": [list(g) for g in GRID],
        "seeds": list(TUNE_SEEDS),
    }
    entries = out.setdefault("scenarios", {})
    for sc in scenarios:
        entries[sc.name] = {**tune(sc), "description": sc.description, "commit": commit}
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(json.dumps(out, indent=2) + "\n")
    return out
