"""The training support of a feature: its quantiles over every decision of Chiron playing many
draws of a family (``chiron support``), from which a deferring policy's threshold is read
(``agents/defer.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents.chiron import ChironAgent
from agents.defer import DEFER_FEATURE, Deferral
from agents.run.episode import play
from chiron_gym.envs import AutoscaleEnv


def support_quantile(
    scenario: str,
    seeds: Sequence[int],
    quantiles: Sequence[float],
    feature: str = DEFER_FEATURE,
    progress: bool = True,
) -> dict[str, Any]:
    """Quantiles of ``feature`` (raw units) over every decision of Chiron playing ``scenario``
    (a family: one draw per seed). The traffic does not depend on the agent; Chiron plays
    because a residual policy's environment is Chiron's."""
    from tqdm import tqdm

    gauge = Deferral(0.0, feature)  # the feature must be readable
    values: list[float] = []
    for seed in tqdm(list(seeds), desc=f"support of {feature}", disable=not progress):
        env = AutoscaleEnv(scenario, **ChironAgent.env_kwargs)
        try:
            run = play(env, ChironAgent, seed, record_raw=gauge.inputs)
        finally:
            env.close()
        steps = zip(*(run.raw[name] for name in gauge.inputs), strict=True)
        values.extend(gauge.value(dict(zip(gauge.inputs, v, strict=True))) for v in steps)
    x = np.asarray(values, dtype=np.float64)
    return {
        "scenario": scenario,
        "feature": feature,
        "seeds": [int(s) for s in seeds],
        "decisions": int(x.size),
        "max": float(x.max()) if x.size else 0.0,
        "quantiles": {f"{q:g}": float(np.quantile(x, q)) if x.size else 0.0 for q in quantiles},
    }


__all__ = ["support_quantile"]
