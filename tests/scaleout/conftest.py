"""A real local Ray (2 CPUs) shared by the scale-out tests; skipped, or failed, without Ray."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import skip_unless_required

# ``evaluate`` without figures, TensorBoard runs or a progress bar: the tests read results.csv.
QUIET: dict[str, Any] = {"plots": False, "tensorboard": False, "progress": False}


def require_ray() -> None:
    """Skip when Ray is not installed; fail instead when CHIRON_REQUIRE_RAY=1 (make test)."""
    if importlib.util.find_spec("ray") is None:
        skip_unless_required(
            'Ray is not installed (pip install -e ".[ray]"; make test installs it)',
            "CHIRON_REQUIRE_RAY",
        )


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """``ray.init(num_cpus=2)`` once for the session; ``ray_session`` uses it as it is."""
    require_ray()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
