"""The closed-form arithmetic of a fast-forwarded stretch of decode-only iterations.

When an iteration only decodes, the next ones differ only by growing contexts: iteration ``j``
(from 0) of ``n`` sequences with summed context ``s0`` costs ``base + slope * (s0 + n * j)`` (the
perf model's affine piece, ``PerfModel.decode_cost``), so ``k`` of them take
``T(k) = k * base + slope * (k * s0 + n * k * (k - 1) / 2)``. ``Instance`` (``sim/instance.py``)
plans a stretch with these functions and holds its KV blocks; here is only the arithmetic: how
long the stretch may run and where a cut falls.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def stretch_elapsed(k: int, base: float, slope: float, s0: float, n: int) -> float:
    """Seconds of ``k`` decode iterations of ``n`` sequences from summed context ``s0``, iteration
    ``j`` costing ``base + slope * (s0 + n * j)``."""
    return k * base + slope * (k * s0 + n * k * (k - 1) / 2.0)


def last_fitting(k_max: int, blocks_after: Callable[[int], int], cap: int) -> int:
    """The longest stretch, shorter than ``k_max``, whose KV blocks fit ``cap``:
    ``blocks_after(k)`` blocks are held after ``k`` iterations (growing with ``k``); one iteration
    fits (it was allocated) and ``k_max`` do not."""
    lo, hi = 1, k_max  # blocks_after(lo) fits (iteration 0 was allocated), hi does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if blocks_after(mid) <= cap:
            lo = mid
        else:
            hi = mid
    return lo


def stretch_length(
    now: float,
    k_max: int,
    base: float,
    slope: float,
    s0: float,
    n: int,
    valid_until: float,
    horizon_s: float,
) -> int:
    """How many of ``k_max`` iterations, starting at ``now``, a stretch runs: it stays on the perf
    model's affine piece (valid while the summed context is below ``valid_until``) and ends no
    later than ``horizon_s``. At most 1: no stretch."""
    if valid_until < math.inf:
        # Iteration k has summed context s0 + n * k; keep the stretch on one affine piece.
        k_max = min(k_max, int((valid_until - s0) // n) + 1)
        if k_max <= 1:
            return k_max
    if now + stretch_elapsed(k_max, base, slope, s0, n) > horizon_s:
        # Largest K with now + T(K) <= horizon: solve the quadratic, then settle exactly.
        a = slope * n / 2.0
        b = base + slope * (s0 - n / 2.0)
        room = horizon_s - now
        if a > 0:
            k_est = int((-b + math.sqrt(b * b + 4.0 * a * room)) / (2.0 * a))
        else:
            k_est = int(room / b)
        k = max(1, min(k_est, k_max))
        while k > 1 and now + stretch_elapsed(k, base, slope, s0, n) > horizon_s:
            k -= 1
        while k < k_max and now + stretch_elapsed(k + 1, base, slope, s0, n) <= horizon_s:
            k += 1
        k_max = k
    return k_max


def iterations_begun(
    now: float, t0: float, base: float, slope: float, s0: float, n: int, k_max: int
) -> int:
    """Of a stretch of ``k_max`` iterations started at ``t0``, how many have begun by ``now``:
    those that ended by then and the one in progress (``k_max`` once the stretch has ended)."""
    lo, hi = 0, k_max  # t0 + elapsed(lo) <= now < t0 + elapsed(hi)
    if t0 + stretch_elapsed(hi, base, slope, s0, n) <= now:
        return k_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t0 + stretch_elapsed(mid, base, slope, s0, n) <= now:
            lo = mid
        else:
            hi = mid
    return lo + 1
