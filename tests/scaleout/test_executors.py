"""Executors without Ray: names, the install hint, the search-space file's errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agents.run.executors import ExecutorError, resolve, run_tasks
from tests.scaleout.conftest import require_ray


def _half(x: int) -> float:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x / 2


@pytest.mark.parametrize("executor", ["local", "process"])
def test_outcomes_keep_indices_and_errors(executor: str) -> None:
    out = sorted(run_tasks(_half, [(2,), (-1,), (6,)], executor=executor), key=lambda o: o.index)
    assert [o.value for o in out] == [1.0, None, 3.0]
    assert out[1].error == "ValueError: negative: -1" and not out[1].ok


def test_unknown_executor_and_address_without_ray() -> None:
    with pytest.raises(ExecutorError, match="expected one of auto, local, process, ray"):
        resolve("dask", 3)
    assert resolve("auto", 1) == "local"
    with pytest.raises(ExecutorError, match="--ray-address is for --executor ray"):
        run_tasks(_half, [(1,)], executor="local", ray_address="auto")


def test_without_ray_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ExecutorError, match=r'pip install "chiron-gym\[ray\]"'):
        run_tasks(_half, [(1,)], executor="ray")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rat: 0.1\n", "learning_rat: unknown hyperparameter"),
        ("gamma: {uniform: [0.99, 0.9]}\n", r"gamma: uniform: expected \[low, high\]"),
        ("learning_rate: {loguniform: [0, 1]}\n", "low bound must be > 0"),
        ("n_steps: {randint: [1.5, 9]}\n", "randint: expected integer bounds"),
        ("n_steps: {sample: [1, 2]}\n", "n_steps: expected one of [{]uniform"),
        ("clip_range: {choice: []}\n", "choice: expected a non-empty list"),
        ("[1, 2]\n", "expected a mapping of hyperparameter"),
    ],
)
def test_search_space_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    require_ray()
    from agents.train.ppo import TrainError
    from agents.train.tune import load_space

    p = tmp_path / "space.yml"
    p.write_text(text)
    with pytest.raises(TrainError, match=message) as info:
        load_space(p)
    assert str(p) in str(info.value)


def test_shipped_search_space_loads() -> None:
    require_ray()
    from agents.train.tune import load_space

    space = load_space()
    assert {"learning_rate", "n_steps", "gamma"} <= set(space)
