"""Least squares on relative error: the fitting math of ``fit_terms.py`` (kernel tables) and
``measure.py`` (a live endpoint's timings)."""

from __future__ import annotations

from typing import Any

import numpy as np

from chiron_gym.profiles.forms import FlatThenLinear

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def round6(x: float) -> float:
    """Six significant digits: what ships, and what the held-out error is computed with."""
    return float(f"{x:.6g}")


def wls(a: FloatArray, t: FloatArray) -> FloatArray:
    """Minimise sum(((a @ x) - t) / t) ** 2."""
    x, *_ = np.linalg.lstsq(a / t[:, None], np.ones(len(t)), rcond=None)
    return np.asarray(x, dtype=np.float64)


def fit_max(
    f1: FloatArray, f2: FloatArray, key: FloatArray, t: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Fit ``max(f1 @ x, f2 @ y)``: ``f1`` the floor below a threshold of ``key``, ``f2`` above.

    Tries every threshold between observed values of ``key`` (and none: ``f2`` alone) and keeps
    the split with the smallest relative error of the max on all points.
    """
    best: tuple[float, FloatArray, FloatArray] | None = None
    y_all = wls(f2, t)
    x_none = np.zeros(f1.shape[1])
    err = float(np.mean(np.abs(np.maximum(f1 @ x_none, f2 @ y_all) / t - 1.0)))
    best = (err, x_none, y_all)
    for th in np.unique(key)[:-1]:
        lo = key <= th
        hi = ~lo
        if lo.sum() < f1.shape[1] or hi.sum() < f2.shape[1] + 1:
            continue
        x = wls(f1[lo], t[lo])
        y = wls(f2[hi], t[hi])
        err = float(np.mean(np.abs(np.maximum(f1 @ x, f2 @ y) / t - 1.0)))
        if err < best[0]:
            best = (err, x, y)
    return best[1], best[2]


def fit_flat_linear(x: FloatArray, t: FloatArray, quanta: tuple[int, ...]) -> FlatThenLinear:
    """``FlatThenLinear`` in ``x`` (rounded to ``round6``), at the quantum of ``quanta`` that fits
    best."""
    best: tuple[float, FlatThenLinear] | None = None
    one = np.ones((len(x), 1))
    for q in quanta:
        xq = np.ceil(x / q) * q
        lo, hi = fit_max(one, np.c_[np.ones(len(x)), xq], xq, t)
        form = FlatThenLinear(round6(lo[0]), round6(hi[0]), round6(hi[1]), q)
        err = mape_of([form(v) for v in x], t)
        if best is None or err < best[0]:
            best = (err, form)
    assert best is not None
    return best[1]


def mape_of(pred: Any, t: FloatArray) -> float:
    """Mean absolute percentage error of ``pred`` against ``t``."""
    return float(np.mean(np.abs(np.asarray(pred, dtype=np.float64) / t - 1.0)) * 100.0)


def nonneg_lstsq(a: np.ndarray, y: np.ndarray, relative: bool = True) -> np.ndarray:
    """Least squares (relative errors when ``relative``), dropping columns that come out
    negative until none does: a small active-set NNLS, enough for four columns."""
    # relative errors, with a floor so that no near-zero sample dominates the fit
    floor = 0.1 * float(np.median(np.abs(y))) if len(y) else 1e-9
    w = 1.0 / np.maximum(np.abs(y), max(floor, 1e-9)) if relative else np.ones_like(y)
    active = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active] * w[:, None], y * w, rcond=None)
        if (sol >= 0).all():
            x[:] = 0.0
            x[active] = sol
            return x
        active.pop(int(np.argmin(sol)))
    return x


def robust_fit(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``nonneg_lstsq``, then again without the points whose relative residual is beyond
    three median absolute deviations: host stalls (a GC pause, another process) put a few
    windows at two or three times the typical gap, and least squares would chase them."""
    x = nonneg_lstsq(a, y)
    rel = (a @ x - y) / np.maximum(np.abs(y), 1e-12)
    mad = float(np.median(np.abs(rel - np.median(rel))))
    keep = np.abs(rel - np.median(rel)) <= 3.0 * max(mad, 1e-3)
    if keep.sum() >= a.shape[1] + 1 and not keep.all():
        x = nonneg_lstsq(a[keep], y[keep])
    return x
