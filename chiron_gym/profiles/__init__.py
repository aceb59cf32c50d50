"""Calibrated performance profiles: the iteration-time model of real GPUs and models.

``load("a100-llama3-8b-tp1")`` returns a ``Profile``; ``profile.perf_model()`` is the
simulator's ``PerfModel`` and ``profile.instance_spec()`` a ready ``InstanceSpec``. The functional
form is documented in ``forms.py`` and ``docs/profiles.md``; ``fit.py`` regenerates the shipped
files from the raw data (``chiron profile fit``).
"""

from chiron_gym.profiles.parts import ModelShape
from chiron_gym.profiles.perf import ProfilePerfModel
from chiron_gym.profiles.profile import Profile, ProfileError, load, names

__all__ = ["ModelShape", "Profile", "ProfileError", "ProfilePerfModel", "load", "names"]
