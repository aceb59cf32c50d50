"""Gymnasium environments over a ``Backend``."""

from chiron_gym.backends.base import PoolBounds
from chiron_gym.envs.autoscale import AgentContext, AutoscaleEnv, Snapshot
from chiron_gym.envs.autoscale_v1 import AutoscaleEnvV1
from chiron_gym.envs.feature_table import FEATURE_NAMES, FEATURE_NAMES_V1, FEATURES, FEATURES_V1
from chiron_gym.envs.features import decode

__all__ = [
    "FEATURES",
    "FEATURES_V1",
    "FEATURE_NAMES",
    "FEATURE_NAMES_V1",
    "AgentContext",
    "AutoscaleEnv",
    "AutoscaleEnvV1",
    "PoolBounds",
    "Snapshot",
    "decode",
]
