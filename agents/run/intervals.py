"""Aggregate scores with interval estimates, as rliable computes them (Agarwal et al., "Deep RL at
the edge of the statistical precipice", NeurIPS 2021; ``google-research/rliable`` 1.2.0).

Scores come as a matrix per agent, runs by tasks: here a run is a traffic seed (or, for learned
agents, a training run and seed), a task a scenario. What rliable defines, matched here (its own
package needs ``arch``, which does not import under the pandas we install):

- ``iqm``: the interquartile mean of every run and task pooled (rliable's ``aggregate_iqm``:
  ``scipy.stats.trim_mean`` with ``int(0.25 n)`` values cut at each end, ``axis=None``);
- ``stratified_interval``: the percentile interval of a statistic over a stratified bootstrap,
  runs resampled with replacement within each task (rliable's ``StratifiedBootstrap``,
  ``method="percentile"``);
- ``probability_of_improvement``: per task, the Mann-Whitney U statistic of X over Y divided by
  ``n_x n_y`` (ties count one half; 0.5 when the two columns are equal), averaged over tasks;
  its interval resamples X and Y independently within each task (rliable's
  ``StratifiedIndependentBootstrap``);
- ``performance_profile``: at each threshold tau, the share of runs and tasks scoring above tau
  (rliable's ``run_score_deviation``), with stratified intervals.

The generator is seeded, so a table is the same bytes on a rerun. Intervals are 95 % unless
``level`` says otherwise; a claim of a win needs the interval's lower bound above zero (or above
0.5 for a probability of improvement).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]
REPS = 2000  # bootstrap resamples (rliable's default is 50,000; 2,000 moves a bound < 1 %)
LEVEL = 0.95


def as_matrix(scores: Sequence[Sequence[float]] | Matrix) -> Matrix:
    """Runs by tasks, finite: a ``ValueError`` naming the problem otherwise."""
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"scores must be a runs x tasks matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("scores must be finite (an undefined normalised score is left out first)")
    return m


def iqm(scores: Matrix) -> float:
    """The interquartile mean of all runs and tasks pooled."""
    pooled = np.sort(as_matrix(scores), axis=None)
    cut = int(0.25 * pooled.size)
    return float(pooled[cut : pooled.size - cut].mean())


def _resample(m: Matrix, rng: np.random.Generator) -> Matrix:
    """Runs drawn with replacement within each task (column)."""
    rows = rng.integers(0, m.shape[0], size=m.shape)
    return np.take_along_axis(m, rows, axis=0)


def _interval(values: list[float], level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(values), [tail, 1.0 - tail])
    return float(lo), float(hi)


def stratified_interval(
    scores: Matrix,
    statistic: Callable[[Matrix], float] = iqm,
    *,
    level: float = LEVEL,
    reps: int = REPS,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``statistic`` of ``scores`` and its stratified-bootstrap percentile interval."""
    m = as_matrix(scores)
    rng = np.random.default_rng(seed)
    boot = [statistic(_resample(m, rng)) for _ in range(reps)]
    return (statistic(m), *_interval(boot, level))


def probability_of_improvement(x: Matrix, y: Matrix) -> float:
    """P(X > Y) per task by the Mann-Whitney U statistic, averaged over tasks."""
    x, y = as_matrix(x), as_matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must cover the same tasks ({x.shape[1]} and {y.shape[1]})")
    out = []
    for t in range(x.shape[1]):
        a, b = x[:, t], y[:, t]
        if a.shape == b.shape and np.array_equal(a, b):
            out.append(0.5)
            continue
        # U of X over Y: pairs where x > y, ties one half (scipy's mannwhitneyu statistic)
        greater = (a[:, None] > b[None, :]).sum() + 0.5 * (a[:, None] == b[None, :]).sum()
        out.append(float(greater) / (len(a) * len(b)))
    return float(np.mean(out))


def improvement_interval(
    x: Matrix, y: Matrix, *, level: float = LEVEL, reps: int = REPS, seed: int = 0
) -> tuple[float, float, float]:
    """``probability_of_improvement(x, y)`` and its interval (X and Y resampled apart)."""
    x, y = as_matrix(x), as_matrix(y)
    rng = np.random.default_rng(seed)
    boot = [probability_of_improvement(_resample(x, rng), _resample(y, rng)) for _ in range(reps)]
    return (probability_of_improvement(x, y), *_interval(boot, level))


def performance_profile(
    scores: Matrix, taus: Sequence[float], *, level: float = LEVEL, reps: int = REPS, seed: int = 0
) -> list[tuple[float, float, float, float]]:
    """Per threshold: ``(tau, share of runs and tasks above tau, interval low, high)``."""
    m = as_matrix(scores)
    out = []
    for k, tau in enumerate(taus):

        def above(s: Matrix, t: float = tau) -> float:
            return float(np.mean(s > t))

        share, lo, hi = stratified_interval(m, above, level=level, reps=reps, seed=seed + k)
        out.append((float(tau), share, lo, hi))
    return out


__all__ = [
    "LEVEL",
    "REPS",
    "as_matrix",
    "improvement_interval",
    "iqm",
    "performance_profile",
    "probability_of_improvement",
    "stratified_interval",
]
