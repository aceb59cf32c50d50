"""Deference outside the training support: a residual policy plays Chiron's own action while the
traffic is beyond what its training family drew.

A learned correction is only as good as the states it was trained on. A policy trained on draws
whose interactive traffic stays below some rate has never seen a longer, larger surge; there its
corrections are extrapolation (docs/study-benchmark.md, Lever 4: fine-tuned policies that hold back
Chiron's scale-out through a surge beyond their family's ceiling). A residual policy has a safe
fallback by construction: the controller it corrects. While the interactive arrival rate over the
last minute (the feature ``interactive.arrival_rate_1m``) is above ``above`` requests/s, the agent
answers r = 0, Chiron's action; below it, the policy's. The threshold is read off the training
family, not off any evaluation scenario: a high quantile of that feature over the decisions of
many family draws (``agents/run/support.py``, ``chiron support``), so the policy defers where it was
rarely or never trained.

A model folder carries its deferral in ``train.json`` (``"defer": {"feature", "above",
"source"}``); ``ppo:PATH[defer_above=X]`` sets or overrides it for one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from chiron_gym.config import InputError
from chiron_gym.envs.feature_table import FEATURE_NAMES, FEATURES
from chiron_gym.envs.features import denormalise

DEFER_FEATURE = "interactive.arrival_rate_1m"
DEFER_KEY = "defer"
# quantities a deferral may read that are products of two observation features: the busiest
# 10-s window's interactive arrival rate in the last 5 minutes (a surge's memory: it stays high
# for 5 minutes after the surge's busiest window, through the lulls of on/off traffic)
DERIVED: dict[str, tuple[str, str]] = {
    "interactive.arrival_peak_5m": (
        "interactive.arrival_rate_5m",
        "interactive.arrival_peak_over_mean_5m",
    ),
}


@dataclass(frozen=True)
class Deferral:
    """Play Chiron while feature ``feature`` (raw units) is above ``above``."""

    above: float
    feature: str = DEFER_FEATURE

    def __post_init__(self) -> None:
        for name in self.inputs:
            if name not in FEATURE_NAMES:
                known = ", ".join(sorted(DERIVED))
                raise InputError(
                    f"defer.feature: {name!r} is not an observation feature (nor one of {known})"
                )
            f = FEATURES[FEATURE_NAMES.index(name)]
            if not f.scale.startswith("log:") and not _is_number(f.scale):
                # per-pool scales need the pool's bounds to decode: not supported here
                raise InputError(
                    f"defer.feature: {name!r} is scaled by {f.scale!r}; a deferral reads "
                    "features with a fixed scale (a number or log:<n>)"
                )
        if not (math.isfinite(self.above) and self.above >= 0.0):
            raise InputError(f"defer.above: expected a finite number >= 0, got {self.above}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The observation features the deferral reads."""
        return DERIVED.get(self.feature, (self.feature,))

    def value(self, raw: dict[str, float]) -> float:
        """The deferral's quantity from raw feature values (``info["raw"]`` or decoded)."""
        out = 1.0
        for name in self.inputs:
            out *= raw[name]
        return out

    @cached_property
    def _slots(self) -> tuple[int, ...]:
        """Where the inputs are in the observation (looked up once, not at every decision)."""
        return tuple(FEATURE_NAMES.index(name) for name in self.inputs)

    def raw(self, obs: npt.ArrayLike) -> float:
        """The quantity's raw value in the environment's (normalised) observation ``obs``: the
        environment's own ``denormalise`` (fixed scales need no pool bounds)."""
        x = np.asarray(obs, dtype=np.float64).reshape(-1)
        raw = {FEATURES[i].name: denormalise(FEATURES[i], float(x[i]), {}, {}) for i in self._slots}
        return self.value(raw)

    def active(self, obs: npt.ArrayLike) -> bool:
        return self.raw(obs) > self.above

    def record(self, source: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"feature": self.feature, "above": self.above}
        if source:
            out["source"] = source
        return out

    @classmethod
    def from_record(cls, value: Any, where: str) -> Deferral | None:
        """A ``train.json``'s ``defer`` entry (None: no deferral)."""
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("above"), int | float):
            raise InputError(
                f"{where}: defer: expected {{'above': <number>, 'feature': <name>}}, got {value!r}"
            )
        try:
            return cls(float(value["above"]), str(value.get("feature", DEFER_FEATURE)))
        except InputError as e:
            raise InputError(f"{where}: {e}") from None


def check_defer(defer: Deferral | None, residual: Any) -> Deferral | None:
    """``defer`` if the agent it is for has a controller to defer to (a residual on Chiron)."""
    if defer is not None and residual is None:
        raise InputError(
            "defer: only a residual policy (on Chiron) can defer to Chiron; this model acts alone"
        )
    return defer


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["DEFER_FEATURE", "DEFER_KEY", "DERIVED", "Deferral", "check_defer"]
