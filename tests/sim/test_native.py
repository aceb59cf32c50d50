"""The steady-decoder aggregates and the compiled core change nothing: the same episodes, bit for
bit, as the per-request scheduler and the pure-Python sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chiron_gym import native
from chiron_gym.sim import Cluster
from tests.conftest import skip_unless_required
from tests.sim.strategies import random_case, run_case

ROOT = Path(__file__).resolve().parents[2]


def assert_identical(a: Cluster, b: Cluster) -> None:
    """Every request's outcome, counts and timestamps equal bit for bit."""
    assert a.num_arrived == b.num_arrived
    for name in ("outcome", "preemptions", "admitted_s", "first_token_s", "finish_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for x, y in zip(a.instances, b.instances, strict=True):
        assert (x.tokens_generated, x.decode_tokens, x.preemptions, x.swap_outs) == (
            y.tokens_generated,
            y.decode_tokens,
            y.preemptions,
            y.swap_outs,
        )
        assert x.decode_token_time_s == y.decode_token_time_s
        assert x.ttft_sum_s == y.ttft_sum_s


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1))
@example(1543)  # a recomputation whose chunk left its last token (it decodes from then on)
@example(1692)
@example(1825)
def test_aggregates_equal_the_per_request_scheduler(seed: int) -> None:
    """Random workloads with preemption, chunked prompts, swaps and scaling, fast-forwarded:
    steady decoders kept as aggregates give exactly the per-request scheduler's episode."""
    case = random_case(seed)
    assert_identical(
        run_case(case, fast_forward=True, aggregate=True),
        run_case(case, fast_forward=True, aggregate=False),
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_aggregates_equal_the_per_request_scheduler_with_disaggregation(seed: int) -> None:
    """The same with prefill and decode pools (KV transfers, reads that wait for blocks)."""
    case = random_case(seed, disaggregated=True, prefix=seed % 2 == 0)
    a = run_case(case, fast_forward=True, aggregate=True)
    b = run_case(case, fast_forward=True, aggregate=False)
    assert_identical(a, b)
    assert (a.kv_transfers, a.kv_transfer_s) == (b.kv_transfers, b.kv_transfer_s)


def _simulate(scenario: str, *, pure: bool, per_iteration: bool) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop(native.PURE_ENV, None)
    if pure:
        env[native.PURE_ENV] = "1"
    args = [sys.executable, "-m", "chiron_gym.cli", "simulate", "--scenario", scenario]
    args += ["--seed", "0", "--json"] + (["--per-iteration"] if per_iteration else [])
    out = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    doc.pop("wall_seconds", None)
    return dict(doc)


@pytest.mark.parametrize(
    "scenario", ["scenarios/default.toml", "scenarios/mixed-diurnal.toml"], ids=lambda s: s[10:-5]
)
def test_compiled_core_equals_the_sources(scenario: str) -> None:
    """``chiron simulate --json`` in both modes: the compiled core's output is the sources'."""
    if not native.is_compiled():
        skip_unless_required(
            f"the simulator core is not compiled here ({native.mode()})", "CHIRON_REQUIRE_NATIVE"
        )
    for per_iteration in (False, True):
        compiled = _simulate(scenario, pure=False, per_iteration=per_iteration)
        pure = _simulate(scenario, pure=True, per_iteration=per_iteration)
        assert json.dumps(compiled, sort_keys=True) == json.dumps(pure, sort_keys=True)


def test_pure_python_switch_loads_the_sources() -> None:
    """``CHIRON_PURE_PYTHON=1`` runs the ``.py`` sources of every compiled module."""
    code = (
        "import sys, chiron_gym, chiron_gym.sim, chiron_gym.profiles.perf\n"
        "from chiron_gym import native\n"
        "files = [sys.modules[m].__file__ for m in native.COMPILED]\n"
        "print(native.mode()); assert all(f.endswith('.py') for f in files), files"
    )
    env = dict(os.environ, **{native.PURE_ENV: "1"})
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pure Python")
