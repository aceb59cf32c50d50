"""Gymnasium environments over a ``Backend``."""

from chiron_gym.backends.base import PoolBounds
from chiron_gym.envs.autoscale import AgentContext, AutoscaleEnv, Snapshot
from chiron_gym.envs.autoscale_pd import DisaggregatedAutoscaleEnv
from chiron_gym.envs.features import (
    FEATURE_NAMES,
    FEATURE_NAMES_PD,
    FEATURES,
    FEATURES_PD,
    decode,
)

__all__ = [
    "FEATURES",
    "FEATURES_PD",
    "FEATURE_NAMES",
    "FEATURE_NAMES_PD",
    "AgentContext",
    "AutoscaleEnv",
    "DisaggregatedAutoscaleEnv",
    "PoolBounds",
    "Snapshot",
    "decode",
]
