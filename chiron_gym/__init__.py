"""chiron-gym: a Gymnasium environment of a GPU LLM-serving cluster.

Layers (imports point one way): ``sim`` (discrete-event model, numpy only) and ``workload``
(arrivals, lengths, traces) at the bottom; ``scenario`` and ``episode`` wire them; the ``chiron``
command in ``cli`` is the composition root. ``backends`` put a cluster behind one protocol and
``envs`` is the Gymnasium face over a backend. Importing the package registers
``chiron_gym/Autoscale-v0`` and ``chiron_gym/Autoscale-v1`` (prefill and decode
pools too), each with a vector entry point (``gymnasium.make_vec``: N environments in this
process, ``envs/vector.py``).
The simulator core is compiled with mypyc at install when it can be (``native.py``); the
same sources run uncompiled with the same results.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from chiron_gym import native

native.install()  # the compiled simulator core, or its sources (``chiron_gym/native.py``)

try:
    __version__ = version("chiron-gym")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

ENV_ID = "chiron_gym/Autoscale-v0"
ENV_ID_V1 = "chiron_gym/Autoscale-v1"  # prefill and decode pools too


def _register() -> None:
    """Register the environment ids with Gymnasium (idempotent)."""
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID,
            entry_point="chiron_gym.envs.autoscale:AutoscaleEnv",
            vector_entry_point="chiron_gym.envs.vector:AutoscaleVectorEnv",
        )
    if ENV_ID_V1 not in gymnasium.registry:
        gymnasium.register(
            id=ENV_ID_V1,
            entry_point="chiron_gym.envs.autoscale_v1:AutoscaleEnvV1",
            vector_entry_point="chiron_gym.envs.vector:vector_v1",
        )


_register()

__all__ = ["ENV_ID", "ENV_ID_V1", "__version__"]
