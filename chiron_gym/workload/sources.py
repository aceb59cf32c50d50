"""Arrival kinds a scenario may name: one class each, its parameters and the times it draws.

A kind is a frozen dataclass registered under its name in ``ARRIVAL_KINDS``: its fields are its
parameters (one without a default is required), each marked with the value it takes (``NONNEG``,
``POSITIVE``, ``COUNT``, ``NUMBERS`` or ``PATH``), which the scenario loader reads and checks;
``times`` draws the arrivals. A new kind is one class here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from chiron_gym.workload.arrivals import (
    MAX_PIECES,
    MAX_REQUESTS,
    RateCurve,
    bulk_arrivals,
    diurnal_curve,
    flash_crowd_curve,
    gamma_arrivals,
    onoff_arrivals,
    poisson_arrivals,
    rate_curve_arrivals,
)
from chiron_gym.workload.trace import read_servegen

Times = npt.NDArray[np.float64]

# what a parameter takes
NONNEG = "a number >= 0"
POSITIVE = "a number > 0"
COUNT = "an integer >= 0"
NUMBERS = "a non-empty array of numbers"
PATH = "a file path, relative to the scenario"


def _param(value: str, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"value": value})


class ArrivalKind:
    """An arrival process with its parameters (subclasses are frozen dataclasses)."""

    __slots__ = ()
    kind: ClassVar[str]

    @classmethod
    def parameters(cls) -> tuple[Field[Any], ...]:
        """The parameters, in order; ``metadata["value"]`` says what each takes."""
        return fields(cls)  # type: ignore[arg-type]

    @classmethod
    def of(cls, params: dict[str, Any]) -> ArrivalKind:
        """The kind with ``params`` (other keys, such as ``kind``, are ignored)."""
        return cls(**{f.name: params[f.name] for f in cls.parameters() if f.name in params})

    def invalid(self) -> tuple[str, str] | None:
        """``(parameter, expected)`` when the parameters do not go together, else ``None``."""
        return None

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        """Arrival times on ``[0, horizon_s)``, sorted."""
        raise NotImplementedError

    def peak_rate(self) -> float | None:
        """The highest arrival rate it reaches, requests/s (None: not a rate process)."""
        return None

    def too_big(self, horizon_s: float) -> tuple[str, str] | None:
        """``(parameter, expected)`` when drawing ``horizon_s`` of arrivals would pass
        ``MAX_REQUESTS`` (or a rate curve ``MAX_PIECES``), else ``None``."""
        peak = self.peak_rate()
        if peak is not None and peak * horizon_s > MAX_REQUESTS:
            name = next(f.name for f in self.parameters() if "rate" in f.name)
            return name, (
                f"at most {MAX_REQUESTS / horizon_s:g} requests/s over this horizon "
                f"({MAX_REQUESTS:,} requests)"
            )
        return None

    def closed_loop(self) -> tuple[int, int] | None:
        """``(clients, warm-up requests)`` of a closed loop; None for an open arrival process."""
        return None


ARRIVAL_KINDS: dict[str, type[ArrivalKind]] = {}
K = TypeVar("K", bound=ArrivalKind)


def _kind(name: str) -> Callable[[type[K]], type[K]]:
    def register(cls: type[K]) -> type[K]:
        cls.kind = name
        ARRIVAL_KINDS[name] = cls
        return cls

    return register


@_kind("poisson")
@dataclass(frozen=True, slots=True)
class Poisson(ArrivalKind):
    """A homogeneous Poisson process of ``rate_per_s``."""

    rate_per_s: float = _param(NONNEG)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        return poisson_arrivals(rng, self.rate_per_s, horizon_s)

    def peak_rate(self) -> float | None:
        return self.rate_per_s


@_kind("gamma")
@dataclass(frozen=True, slots=True)
class Gamma(ArrivalKind):
    """A Gamma renewal process: mean rate ``rate_per_s``, inter-arrival CV ``cv``."""

    rate_per_s: float = _param(NONNEG)
    cv: float = _param(NONNEG)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        return gamma_arrivals(rng, self.rate_per_s, self.cv, horizon_s)

    def peak_rate(self) -> float | None:
        return self.rate_per_s


@_kind("onoff")
@dataclass(frozen=True, slots=True)
class OnOff(ArrivalKind):
    """A two-state Markov-modulated Poisson process: ``rate_on_per_s`` during on spells,
    ``rate_off_per_s`` during off spells, exponential sojourns of means ``mean_on_s`` and
    ``mean_off_s``."""

    rate_on_per_s: float = _param(POSITIVE)
    mean_on_s: float = _param(POSITIVE)
    mean_off_s: float = _param(POSITIVE)
    rate_off_per_s: float = _param(NONNEG, 0.0)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        return onoff_arrivals(
            rng,
            rate_on_per_s=self.rate_on_per_s,
            mean_on_s=self.mean_on_s,
            mean_off_s=self.mean_off_s,
            rate_off_per_s=self.rate_off_per_s,
            horizon_s=horizon_s,
        )

    def peak_rate(self) -> float | None:
        return max(self.rate_on_per_s, self.rate_off_per_s)


@_kind("diurnal")
@dataclass(frozen=True, slots=True)
class Diurnal(ArrivalKind):
    """A sinusoidal rate of period ``period_s`` (a day by default), arrivals of CV ``cv``."""

    mean_rate_per_s: float = _param(POSITIVE)
    amplitude: float = _param(NONNEG)
    period_s: float = _param(POSITIVE, 86_400.0)
    phase_s: float = _param(NONNEG, 0.0)
    cv: float = _param(NONNEG, 1.0)

    def invalid(self) -> tuple[str, str] | None:
        return ("amplitude", "a number in [0, 1]") if self.amplitude > 1 else None

    def peak_rate(self) -> float | None:
        return self.mean_rate_per_s * (1 + self.amplitude)

    def too_big(self, horizon_s: float) -> tuple[str, str] | None:
        if horizon_s / (self.period_s / 96.0) > MAX_PIECES:  # the curve's 96 steps a period
            return "period_s", f"at least {96 * horizon_s / MAX_PIECES:g} s for this horizon"
        return ArrivalKind.too_big(self, horizon_s)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        curve = diurnal_curve(
            self.mean_rate_per_s, self.amplitude, self.period_s, horizon_s, phase_s=self.phase_s
        )
        return rate_curve_arrivals(rng, curve, horizon_s, self.cv)


@_kind("flash_crowd")
@dataclass(frozen=True, slots=True)
class FlashCrowd(ArrivalKind):
    """The base rate, a step to the peak at ``start_s`` held ``hold_s``, then the base again."""

    base_rate_per_s: float = _param(POSITIVE)
    peak_rate_per_s: float = _param(POSITIVE)
    start_s: float = _param(POSITIVE)
    hold_s: float = _param(POSITIVE)
    cv: float = _param(NONNEG, 1.0)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        curve = flash_crowd_curve(
            self.base_rate_per_s, self.peak_rate_per_s, self.start_s, self.hold_s
        )
        return rate_curve_arrivals(rng, curve, horizon_s, self.cv)

    def peak_rate(self) -> float | None:
        return max(self.base_rate_per_s, self.peak_rate_per_s)


@_kind("piecewise")
@dataclass(frozen=True, slots=True)
class Piecewise(ArrivalKind):
    """A piecewise-constant rate: ``rates_per_s[i]`` from ``starts_s[i]``."""

    starts_s: Sequence[float] = _param(NUMBERS)
    rates_per_s: Sequence[float] = _param(NUMBERS)
    cv: float = _param(NONNEG, 1.0)

    def invalid(self) -> tuple[str, str] | None:
        if len(self.starts_s) != len(self.rates_per_s):
            return "rates_per_s", "one rate per entry of starts_s"
        if self.starts_s[0] != 0:
            return "starts_s", "a first start of 0 (the rate from the episode's start)"
        if any(b <= a for a, b in zip(self.starts_s, self.starts_s[1:], strict=False)):
            return "starts_s", "increasing start times"
        if any(r < 0 for r in self.rates_per_s):
            return "rates_per_s", "rates >= 0"
        if len(self.starts_s) > MAX_PIECES:
            return "starts_s", f"at most {MAX_PIECES:,} pieces"
        return None

    def peak_rate(self) -> float | None:
        return max(self.rates_per_s)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        curve = RateCurve(tuple(self.starts_s), tuple(self.rates_per_s))
        return rate_curve_arrivals(rng, curve, horizon_s, self.cv)


@_kind("servegen")
@dataclass(frozen=True, slots=True)
class ServeGen(ArrivalKind):
    """A ServeGen rate file (per-window rates and CVs), its rates times ``rate_scale``; its
    clock stretched by ``time_scale`` as a trace replay's is (the same requests, at times x
    ``time_scale``: 1/12 plays a day's 10-minute windows as a 2-hour day of 50-second ones).
    ``start_s`` (file seconds, before ``time_scale``) starts the replay later in the file: 604800
    plays the second week from its first window."""

    path: str = _param(PATH)
    rate_scale: float = _param(POSITIVE, 1.0)
    time_scale: float = _param(POSITIVE, 1.0)
    start_s: float = _param(NONNEG, 0.0)

    def invalid(self) -> tuple[str, str] | None:
        if not Path(self.path).is_file():
            return "path", f"an existing ServeGen rate file ({self.path} is not a file)"
        last = read_servegen(self.path).starts_s[-1]
        if self.start_s > last:
            return "start_s", f"at most {last:g} (the file's last window starts there)"
        return None

    def peak_rate(self) -> float | None:
        return max(read_servegen(self.path).rates_per_s, default=0.0) * self._factor

    @property
    def _factor(self) -> float:
        return self.rate_scale / self.time_scale

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        curve = read_servegen(self.path)
        if self.start_s > 0:  # from the window holding ``start_s``, rebased to 0
            k = max(i for i, s in enumerate(curve.starts_s) if s <= self.start_s)
            curve = RateCurve(
                (0.0, *(s - self.start_s for s in curve.starts_s[k + 1 :])),
                curve.rates_per_s[k:],
                curve.cvs[k:] if curve.cvs is not None else None,
            )
        scaled = RateCurve(  # x 1.0 is exact: the defaults leave the file's curve as it is
            tuple(s * self.time_scale for s in curve.starts_s),
            tuple(r * self._factor for r in curve.rates_per_s),
            curve.cvs,
        )
        return rate_curve_arrivals(rng, scaled, horizon_s)


@_kind("bulk")
@dataclass(frozen=True, slots=True)
class Bulk(ArrivalKind):
    """Batch jobs: ``count`` requests at once at ``first_s``, repeated every ``every_s`` (a
    count of 0 is no job: a family may draw it)."""

    count: int = _param(COUNT)
    first_s: float = _param(NONNEG, 0.0)
    every_s: float | None = _param(POSITIVE, None)

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        return bulk_arrivals(
            count=self.count, first_s=self.first_s, every_s=self.every_s, horizon_s=horizon_s
        )

    def too_big(self, horizon_s: float) -> tuple[str, str] | None:
        jobs = 1.0 if self.every_s is None else max(0.0, horizon_s - self.first_s) / self.every_s
        if jobs > MAX_PIECES:
            return "every_s", f"at least {horizon_s / MAX_PIECES:g} s ({MAX_PIECES:,} jobs at most)"
        if self.count * max(jobs, 1.0) > MAX_REQUESTS:
            return "count", f"at most {MAX_REQUESTS:,} requests over the horizon in all"
        return None


@_kind("closed")
@dataclass(frozen=True, slots=True)
class Closed(ArrivalKind):
    """A closed loop, as ``vllm bench serve --max-concurrency`` drives a server: ``concurrency``
    clients each send a request, and the next one the moment the previous ends (or is refused),
    ``requests`` in all; the first ``warmup`` are served but not measured. Interactive, the only
    source of its scenario; the episode ends when every request has (``chiron simulate``)."""

    concurrency: int = _param(COUNT)
    requests: int = _param(COUNT)
    warmup: int = _param(COUNT, 0)

    def invalid(self) -> tuple[str, str] | None:
        if self.concurrency < 1:
            return "concurrency", "an integer >= 1"
        if self.requests < 1:
            return "requests", "an integer >= 1"
        if self.warmup >= self.requests:
            return "warmup", f"fewer than requests ({self.requests})"
        if self.requests > MAX_REQUESTS:
            return "requests", f"at most {MAX_REQUESTS:,}"
        return None

    def times(self, rng: np.random.Generator, horizon_s: float) -> Times:
        first = min(self.concurrency, self.requests)
        out = np.full(self.requests, np.inf)
        out[:first] = 0.0
        return out

    def closed_loop(self) -> tuple[int, int] | None:
        return self.concurrency, self.warmup


def arrival_times(
    kind: str, p: dict[str, Any], rng: np.random.Generator, horizon_s: float
) -> Times:
    """Arrival times of one source on ``[0, horizon_s)``: kind ``kind`` with parameters ``p``."""
    if kind not in ARRIVAL_KINDS:
        raise ValueError(f"unknown arrival kind {kind!r}")
    return ARRIVAL_KINDS[kind].of(p).times(rng, horizon_s)
