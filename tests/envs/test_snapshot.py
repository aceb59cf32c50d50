"""``snapshot()`` / ``restore()`` are exact: a restored episode, in the same environment or in a
fresh one, replays bit for bit what the episode does from the snapshot on, on the compiled core and
on the pure-Python sources alike (and the two agree)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chiron_gym import native
from chiron_gym.envs import AutoscaleEnv, Snapshot, snapshots

ROOT = Path(__file__).resolve().parents[2]
# short episodes of scenarios with every pool kind, batch deadlines, bursts and a family draw
SCENARIOS = (
    "default",
    "chiron-paper",
    "flash-crowd",
    "hetero-h100-a100",
    "chat-prefix",  # prefix caching: the cache and the requests' block hashes
    "family:train",
)
HORIZON_S = 600.0


def _trajectory(env: AutoscaleEnv, actions: list[np.ndarray]) -> list[bytes]:
    out: list[bytes] = []
    for a in actions:
        obs, reward, term, trunc, info = env.step(a)
        out.append(
            obs.tobytes()
            + np.float64(reward).tobytes()
            + json.dumps(info["reward_terms"], sort_keys=True).encode()
            + bytes([term, trunc])
        )
        if term or trunc:
            break
    return out


def snapshot_digest(scenario: str, seed: int, at: int, mode: str) -> str:
    """Play ``at`` random decisions, snapshot, play on; restore (in place, twice, and into a
    fresh environment) and play the same decisions: every replay equal to the first run, which
    equals an episode that never took a snapshot. The digest of the run, to compare cores."""
    env = AutoscaleEnv(scenario, action_mode=mode, horizon_s=HORIZON_S)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    n = round(HORIZON_S / env.scenario.decision_interval_s)
    actions = [env.action_space.sample() for _ in range(n)]
    head = _trajectory(env, actions[:at])
    snap = env.snapshot()
    tail = _trajectory(env, actions[at:])
    for _ in range(2):
        assert env.restore(snap).tobytes() == snap.obs.tobytes()
        assert _trajectory(env, actions[at:]) == tail
    fresh = AutoscaleEnv(scenario, action_mode=mode, horizon_s=HORIZON_S)
    fresh.restore(snap)
    assert snap.steps == len(head)
    assert _trajectory(fresh, actions[at:]) == tail
    plain = AutoscaleEnv(scenario, action_mode=mode, horizon_s=HORIZON_S)
    plain.reset(seed=seed)
    assert _trajectory(plain, actions) == head + tail
    return hashlib.sha256(b"".join(head + tail)).hexdigest()


@settings(max_examples=8, deadline=None)
@given(
    st.sampled_from(SCENARIOS),
    st.integers(0, 2**31 - 2),
    st.integers(0, 30),
    st.sampled_from(("full", "global", "local", "target")),
)
def test_restored_episodes_replay_bit_for_bit(scenario: str, seed: int, at: int, mode: str) -> None:
    snapshot_digest(scenario, seed, at, mode)


@pytest.mark.parametrize("scenario", ["default", "family:train"])
def test_pure_python_core_snapshots_the_same_episode(scenario: str) -> None:
    """The same check on the pure-Python sources, in a subprocess: same digest as compiled."""
    code = (
        "from tests.envs.test_snapshot import snapshot_digest as d; "
        f"print(d({scenario!r}, 7, 13, 'global'))"
    )
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    pure = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, native.PURE_ENV: "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert pure.stdout.strip() == snapshot_digest(scenario, 7, 13, "global")


def test_snapshot_needs_an_episode_and_the_simulator() -> None:
    env = AutoscaleEnv("default")
    with pytest.raises(RuntimeError, match="reset"):
        env.snapshot()
    with pytest.raises(TypeError, match="Snapshot"):
        env.restore({"state": {}})  # type: ignore[arg-type]
    env.reset(seed=0)
    other = AutoscaleEnv("default", action_mode="local")
    with pytest.raises(ValueError, match="action mode 'full'"):
        other.restore(env.snapshot())
    # the same shape of action, another mode: refused too
    full = AutoscaleEnv("default", max_step_change=4)
    full.reset(seed=0)
    target = AutoscaleEnv("default", action_mode="target", max_target=8)
    assert target.action_space == full.action_space
    with pytest.raises(ValueError, match="action mode 'full'"):
        target.restore(full.snapshot())
    live = AutoscaleEnv("default", backend="vllm")
    live._backend = env._backend = object()  # type: ignore[assignment]  # no server is started
    with pytest.raises(NotImplementedError, match="simulator"):
        live.snapshot()
    assert isinstance(Snapshot, type)


def test_a_closed_loop_episode_snapshots_exactly(tmp_path: Path) -> None:
    """A closed loop releases its next request when one ends (the arrival times change during
    the episode): restored, it replays the same."""
    text = (ROOT / "scenarios" / "default.toml").read_text()
    head = text[: text.index("[[workload]]")]
    closed = tmp_path / "closed.toml"
    closed.write_text(
        head + '[[workload]]\nclass = "interactive"\n'
        'arrival = { kind = "closed", concurrency = 16, requests = 3000 }\n'
        'prompt = { kind = "empirical", table = "azure-conv" }\n'
        'output = { kind = "empirical", table = "azure-conv" }\n'
    )
    for at in (3, 20):
        snapshot_digest(str(closed), 11, at, "global")
    env = AutoscaleEnv(str(closed), horizon_s=HORIZON_S)
    env.reset(seed=0)
    restored = AutoscaleEnv(str(closed), horizon_s=HORIZON_S)
    restored.restore(env.snapshot())
    # the arrival times a closed loop rewrites are copied, not shared
    assert restored._backend._cluster._arrival is not env._backend._cluster._arrival  # type: ignore[union-attr]


def test_a_snapshot_shares_what_the_episode_no_longer_changes() -> None:
    """The scenario, the workload's columns, the open loop's arrival times and the instances
    that stopped are shared by reference (what makes a snapshot cost the live state, not the
    episode's history); the live instances and the ledger are copies."""
    env = AutoscaleEnv("default", horizon_s=HORIZON_S)
    env.reset(seed=3)
    k = env.layout.k
    for delta in (1, 1, -1, -1, -1):  # start interactive instances, then scale down past them
        env.step(np.array([k + delta, k, k, 1, 1, 1]))  # caps kept
    cluster = env._backend._cluster  # type: ignore[union-attr]
    stopped = [i for i in cluster.instances if i.state == 3]
    live = [i for i in cluster.instances if i.state != 3]
    assert stopped and live
    snap = env.snapshot()
    fresh = AutoscaleEnv("default", horizon_s=HORIZON_S)
    fresh.restore(snap)
    copy = fresh._backend._cluster  # type: ignore[union-attr]
    assert fresh.scenario is env.scenario and copy.workload is cluster.workload
    assert copy._arrival is cluster._arrival and copy._prompt is cluster._prompt
    by_id = {i.instance_id: i for i in copy.instances}
    assert all(by_id[i.instance_id] is i for i in stopped)
    assert all(by_id[i.instance_id] is not i for i in live)
    assert copy.ledger is not cluster.ledger
    # both go on from the same state: the same next steps
    hold = env.layout.join(None, None)
    for _ in range(5):
        a, b = env.step(hold), fresh.step(hold)
        assert a[0].tobytes() == b[0].tobytes() and a[1] == b[1]


def test_snapshot_data_loads_shared_objects_of_any_type_by_reference() -> None:
    """``snapshots.dump``/``load``: shared objects (lists and dicts included, which a pickler's
    ``reducer_override`` never sees) come back as themselves; everything else is a fresh copy,
    every time it is loaded."""
    table, config = [1.5, 2.5], {"a": (1, 2)}
    state = {"t": table, "c": config, "mine": [table, {"x": 1.0}], "n": np.arange(3)}
    shared = snapshots.distinct([table, config, table])
    assert shared == (table, config)
    data = snapshots.dump(state, shared)
    for _ in range(2):
        got = snapshots.load(data, shared)
        assert got["t"] is table and got["c"] is config and got["mine"][0] is table
        assert got["mine"][1] == {"x": 1.0} and got["mine"] is not state["mine"]
        assert np.array_equal(got["n"], state["n"]) and got["n"] is not state["n"]


def test_a_request_pickles_every_field() -> None:
    """``Request.__reduce__`` (a tuple of fields, for snapshots' speed) leaves none out."""
    import pickle

    from chiron_gym.sim.request import Request

    # the attributes: ``__slots__`` in the sources, ``__mypyc_attrs__`` compiled
    names = getattr(Request, "__slots__", None) or Request.__mypyc_attrs__  # type: ignore[attr-defined]
    assert len(names) == 21
    r = Request(7, 1, 2.5, 100, 50, 99.0, (11, 12))
    for i, name in enumerate(names):
        if name not in ("idx", "klass", "arrival_s", "prompt_tokens", "output_tokens"):
            old = getattr(r, name)
            new = [i] if isinstance(old, list) else (i,) if isinstance(old, tuple) else i + 0.5
            if isinstance(old, int) and not isinstance(old, bool):
                new = i
            setattr(r, name, new)
    copy = pickle.loads(pickle.dumps(r))
    assert all(getattr(copy, n) == getattr(r, n) for n in names)
