"""A real local Ray (2 CPUs) shared by the scale-out tests; skipped, or failed, without Ray."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import pytest


def require_ray() -> None:
    """Skip when Ray is not installed; fail instead when CHIRON_REQUIRE_RAY=1 (make test)."""
    if importlib.util.find_spec("ray") is None:
        message = 'Ray is not installed (pip install -e ".[ray]"; make test installs it)'
        if os.environ.get("CHIRON_REQUIRE_RAY") == "1":
            pytest.fail(message + "; CHIRON_REQUIRE_RAY=1 makes this a failure")
        pytest.skip(message)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    """``ray.init(num_cpus=2)`` once for the session; ``ray_session`` uses it as it is."""
    require_ray()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
