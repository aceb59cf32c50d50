"""The batch-cap choices of the local level, shared by the environment's action and Chiron.

Choice ``HALVE`` halves the cap, ``KEEP`` keeps it, ``INCREASE`` adds a quarter (at least one),
``DOUBLE`` doubles it; ``new_cap`` applies one within ``[1, max_cap]``.
"""

from __future__ import annotations

import math

HALVE, KEEP, INCREASE, DOUBLE = 0, 1, 2, 3
CAP_CHOICES = ("halve", "keep", "increase", "double")


def new_cap(cap: int, choice: int, max_cap: int) -> int:
    """The batch cap after a cap choice, within ``[1, max_cap]``."""
    if choice == HALVE:
        out = cap // 2
    elif choice == INCREASE:
        out = cap + max(1, math.ceil(cap / 4))
    elif choice == DOUBLE:
        out = cap * 2
    else:
        out = cap
    return max(1, min(out, max_cap))
