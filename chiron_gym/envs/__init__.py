"""Gymnasium environments over a ``Backend``."""

from chiron_gym.backends.base import PoolBounds
from chiron_gym.envs.autoscale import AgentContext, AutoscaleEnv, Snapshot
from chiron_gym.envs.features import FEATURE_NAMES, FEATURES, decode

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "AgentContext",
    "AutoscaleEnv",
    "PoolBounds",
    "Snapshot",
    "decode",
]
