"""Token-length distributions for prompts and outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class LengthDist:
    """``fixed`` (``mean``) or ``lognormal`` (``mean`` and ``cv``), clipped to ``[low, high]``."""

    kind: str = "fixed"
    mean: float = 128.0
    cv: float = 0.0
    low: int = 1
    high: int = 32_768

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "lognormal"):
            raise ValueError(f"LengthDist.kind must be 'fixed' or 'lognormal', got {self.kind!r}")
        if not self.mean >= 1:
            raise ValueError(f"LengthDist.mean must be >= 1, got {self.mean!r}")
        if self.cv < 0:
            raise ValueError(f"LengthDist.cv must be >= 0, got {self.cv!r}")
        if not 1 <= self.low <= self.high:
            raise ValueError("LengthDist needs 1 <= low <= high")

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """``n`` lengths in tokens."""
        if self.kind == "fixed" or self.cv == 0:
            values = np.full(n, self.mean)
        else:
            sigma2 = math.log1p(self.cv**2)
            mu = math.log(self.mean) - sigma2 / 2
            values = rng.lognormal(mu, math.sqrt(sigma2), size=n)
        out: npt.NDArray[np.int64] = np.clip(np.rint(values), self.low, self.high).astype(np.int64)
        return out
