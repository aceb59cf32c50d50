"""Token-length distributions for prompts and outputs."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class LengthDist:
    """``fixed`` (``mean``), ``lognormal`` (``mean`` and ``cv``) or ``empirical`` (a quantile
    table: ``values[i]`` at cumulative probability ``probs[i]``, interpolated linearly), clipped
    to ``[low, high]``."""

    kind: str = "fixed"
    mean: float = 128.0
    cv: float = 0.0
    low: int = 1
    high: int = 32_768
    probs: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "lognormal", "empirical"):
            raise ValueError(
                f"LengthDist.kind must be 'fixed', 'lognormal' or 'empirical', got {self.kind!r}"
            )
        if self.kind == "empirical":
            p = self.probs
            if len(p) < 2 or len(p) != len(self.values) or p[0] != 0.0 or p[-1] != 1.0:
                raise ValueError("LengthDist empirical table: probs from 0 to 1, one value each")
            if any(b < a for a, b in itertools.pairwise(p)) or any(
                b < a for a, b in zip(self.values, self.values[1:], strict=False)
            ):
                raise ValueError("LengthDist empirical table must be non-decreasing")
        if not self.mean >= 1:
            raise ValueError(f"LengthDist.mean must be >= 1, got {self.mean!r}")
        if self.cv < 0:
            raise ValueError(f"LengthDist.cv must be >= 0, got {self.cv!r}")
        if not 1 <= self.low <= self.high:
            raise ValueError("LengthDist needs 1 <= low <= high")

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """``n`` lengths in tokens."""
        if self.kind == "empirical":
            values = np.interp(rng.random(n), self.probs, self.values)
        elif self.kind == "fixed" or self.cv == 0:
            values = np.full(n, self.mean)
        else:
            sigma2 = math.log1p(self.cv**2)
            mu = math.log(self.mean) - sigma2 / 2
            values = rng.lognormal(mu, math.sqrt(sigma2), size=n)
        out: npt.NDArray[np.int64] = np.clip(np.rint(values), self.low, self.high).astype(np.int64)
        return out
