"""Random streams: every draw of a scenario comes from a named child stream of the seed, so that
the workload is a pure function of the seed and each part is independent of the others."""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """A named child random stream of ``seed`` (independent of every other name)."""
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))
    )
