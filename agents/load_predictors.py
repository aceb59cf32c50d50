"""Load predictors of Dynamo's SLA planner (``load_predictor.py``): the next interval's value
from the past intervals'.

``constant``: the last value (0 before any). ``kalman``: a local linear-trend Kalman filter
(level and trend; process noise 1.0 on the level and 0.1 on the trend, observation noise 10.0,
the last value until 5 points: the defaults of Dynamo's ``KalmanPredictor``). Dynamo's default
is ``arima`` (``pmdarima.auto_arima`` refit every interval), which we do not ship.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np


class Predictor(Protocol):
    def add(self, value: float) -> None: ...

    def next(self) -> float: ...


class Constant:
    """The last value."""

    def __init__(self) -> None:
        self.last = 0.0

    def add(self, value: float) -> None:
        self.last = 0.0 if math.isnan(value) else value

    def next(self) -> float:
        return self.last


class Kalman:
    """Level and trend, one step ahead."""

    def __init__(
        self, q_level: float = 1.0, q_trend: float = 0.1, r: float = 10.0, min_points: int = 5
    ) -> None:
        self.q = np.diag([q_level, q_trend])
        self.r = r
        self.min_points = min_points
        self.n = 0
        self.last = 0.0
        self.x = np.zeros(2)  # level, trend
        self.cov = np.eye(2) * 1e3

    def add(self, value: float) -> None:
        value = 0.0 if math.isnan(value) else value
        self.last = value
        f = np.array([[1.0, 1.0], [0.0, 1.0]])
        if self.n == 0:
            self.x = np.array([value, 0.0])
        else:
            self.x = f @ self.x  # predict
            self.cov = f @ self.cov @ f.T + self.q
            h = np.array([1.0, 0.0])  # update with the observed level
            s = float(h @ self.cov @ h) + self.r
            gain = self.cov @ h / s
            self.x = self.x + gain * (value - float(h @ self.x))
            self.cov = self.cov - np.outer(gain, h) @ self.cov
        self.n += 1

    def next(self) -> float:
        if self.n < self.min_points:
            return self.last
        return float(self.x[0] + self.x[1])


PREDICTORS = {"constant": Constant, "kalman": Kalman}


def predictor(kind: str) -> Predictor:
    cls = PREDICTORS.get(kind)
    if cls is None:
        raise ValueError(f"load_predictor {kind!r}: expected one of {', '.join(PREDICTORS)}")
    out: Predictor = cls()
    return out


__all__ = ["PREDICTORS", "Constant", "Kalman", "Predictor", "predictor"]
