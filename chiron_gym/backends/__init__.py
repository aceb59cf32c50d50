"""Backends: what an environment drives. ``Backend`` is the protocol; ``SimBackend`` the simulator.

The environment talks to a backend only through ``Backend``; the real vLLM backend (issue 8)
implements the same protocol on wall-clock time.
"""

from chiron_gym.backends.base import Backend, PoolState
from chiron_gym.backends.sim import SimBackend

__all__ = ["Backend", "PoolState", "SimBackend", "make_backend"]


def make_backend(name: str, scenario: object) -> Backend:
    """The backend called ``name`` for ``scenario``."""
    from chiron_gym.scenario import Scenario

    if not isinstance(scenario, Scenario):
        raise TypeError("make_backend needs a Scenario")
    if name == "sim":
        return SimBackend(scenario)
    raise ValueError(f"unknown backend {name!r}; known: 'sim' (the real 'vllm' backend is issue 8)")
