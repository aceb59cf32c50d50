"""Gymnasium environments over a ``Backend``."""

from chiron_gym.envs.autoscale import AutoscaleEnv
from chiron_gym.envs.features import FEATURE_NAMES, FEATURES

__all__ = ["FEATURES", "FEATURE_NAMES", "AutoscaleEnv"]
