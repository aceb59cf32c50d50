"""Gymnasium environments over a ``Backend``."""

from chiron_gym.envs.autoscale import AgentContext, AutoscaleEnv
from chiron_gym.envs.features import FEATURE_NAMES, FEATURES, PoolStatic, decode

__all__ = ["FEATURES", "FEATURE_NAMES", "AgentContext", "AutoscaleEnv", "PoolStatic", "decode"]
