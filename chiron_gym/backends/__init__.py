"""Backends: what an environment drives. ``Backend`` is the protocol; ``SimBackend`` the simulator.

The environment talks to a backend only through ``Backend``; the real vLLM backend (issue 8)
implements the same protocol on wall-clock time.
"""

from chiron_gym.backends.base import Backend, PoolBounds, PoolState
from chiron_gym.backends.sim import SimBackend

__all__ = ["Backend", "PoolBounds", "PoolState", "SimBackend", "make_backend"]


def make_backend(name: str, scenario: object, options: dict[str, object] | None = None) -> Backend:
    """The backend called ``name`` (``sim`` or ``vllm``) for ``scenario``.

    ``options`` go to the backend's constructor: for ``vllm``, ``server`` (a ``ServerConfig`` or
    a dict of its fields), ``endpoints`` (pool name -> URLs to adopt), ``time_scale``.
    """
    from chiron_gym.scenario import Scenario

    if not isinstance(scenario, Scenario):
        raise TypeError("make_backend needs a Scenario")
    opts = dict(options or {})
    if name == "sim":
        return SimBackend(scenario, **opts)  # type: ignore[arg-type]
    if name == "vllm":
        from chiron_gym.backends.vllm import ServerConfig, VllmBackend

        server = opts.pop("server", None)
        if isinstance(server, dict):
            server = ServerConfig(**server)
        return VllmBackend(scenario, server, **opts)  # type: ignore[arg-type]
    raise ValueError(f"unknown backend {name!r}; known: 'sim', 'vllm'")
