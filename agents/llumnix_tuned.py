"""``llumnix-tuned``: Llumnix's ``avg_load`` autoscaler with thresholds and batch size tuned per
workload, as the Chiron paper's second baseline.

Tuning (``agents/tuning.py``, the procedure and budget ``chiron-tuned`` gets too): a grid over the
scale-up threshold and the batch cap, widened where the best sits on an edge, scored by the env's
reward on seeds no evaluation uses. Results for the bundled scenarios ship in
``agents/tuned/llumnix-tuned.json`` (``TABLE.write([scenario, ...], commit)`` tunes and merges
entries; ``make tuned`` rewrites both tables); a scenario not in the table, or whose description
changed, is tuned when the agent is first built for it (once per process).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from agents.base import RULE_MAX_STEP, VLLM_DEFAULT_MAX_NUM_SEQS
from agents.baselines import LlumnixAgent, LlumnixParams
from agents.tuning import Axis, TunedTable, grid_search
from chiron_gym.envs import AgentContext
from chiron_gym.envs.actions import HALVE, KEEP
from chiron_gym.scenario import Scenario

# freeness in decode steps; the untuned policy's ratio of the two thresholds (60 / 10) is kept
DOWN_OVER_UP = 6.0
AXES = [
    Axis("scale_up_below", (2.5, 5.0, 10.0, 20.0, 40.0, 80.0), low=0.01),
    # reached by halving from vLLM's default max_num_seqs, which bounds it
    Axis("batch_cap", (32, 64, 128, 256), low=1, high=VLLM_DEFAULT_MAX_NUM_SEQS, integer=True),
]


class LlumnixTunedAgent(LlumnixAgent):
    """Llumnix with per-workload thresholds and a batch cap reached by halving from 256."""

    name = "llumnix-tuned"

    def __init__(self, ctx: AgentContext, tuned: dict[str, Any] | None = None) -> None:
        tuned = TABLE.params(ctx.scenario) if tuned is None else tuned
        self.target_cap = int(tuned["batch_cap"])
        super().__init__(
            ctx,
            LlumnixParams(
                scale_up_below=float(tuned["scale_up_below"]),
                scale_down_above=float(tuned["scale_up_below"]) * DOWN_OVER_UP,
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


def score(scenario: Scenario, params: dict[str, float], seed: int) -> float:
    """The env reward of one episode of ``llumnix-tuned`` at ``params``."""
    from agents.run.episode import play  # agents.run.episode imports this package's registry
    from chiron_gym.envs.autoscale_v1 import make_env  # prefill and decode pools too

    env = make_env(
        scenario,
        action_mode="full",
        max_step_change=RULE_MAX_STEP,
        initial_batch_cap=VLLM_DEFAULT_MAX_NUM_SEQS,
    )
    tuned = {"scale_up_below": params["scale_up_below"], "batch_cap": int(params["batch_cap"])}
    run = play(env, lambda ctx: LlumnixTunedAgent(ctx, tuned), seed)
    env.close()
    return run.reward


def tune(scenario: Scenario, progress: bool = True) -> dict[str, Any]:
    """``agents/tuning.py``'s grid search over ``AXES``."""
    out = grid_search(score, scenario, AXES, label="llumnix-tuned", progress=progress)
    out["scale_down_above"] = out["scale_up_below"] * DOWN_OVER_UP
    return out


TABLE = TunedTable(
    "llumnix-tuned", "llumnix-tuned scale-up threshold (scale-down 6x) and batch cap", tune
)
