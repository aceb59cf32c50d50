"""chiron-gym: a Gymnasium environment of a GPU LLM-serving cluster.

Layers (imports point one way): ``sim`` (discrete-event model, numpy only) and ``workload``
(arrivals, lengths, traces) at the bottom; ``scenario`` and ``episode`` wire them; the ``chiron``
command in ``cli`` is the composition root.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chiron-gym")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
