"""Instance failures in the environment: each one is reported in ``info["backend_events"]`` (as
the real backend reports a dead server), the agent sees the lost capacity in its pool counts,
and an episode with failures snapshots and replays bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chiron_gym.envs import AutoscaleEnv
from tests.envs.test_snapshot import ROOT, snapshot_digest


def _failing(tmp_path: Path) -> str:
    text = (ROOT / "scenarios" / "default.toml").read_text()
    text = text.replace(
        "[pools.interactive]\ninitial = 2\n",
        '[failures]\nat = [{ t_s = 61.0, pool = "interactive" }]\n\n'
        "[pools.interactive]\ninitial = 2\nfailures_per_gpu_hour = 6.0\n",
    )
    path = tmp_path / "failing.toml"
    path.write_text(text)
    return str(path)


def test_failures_are_reported_and_the_pool_shrinks(tmp_path: Path) -> None:
    env = AutoscaleEnv(_failing(tmp_path), action_mode="global")
    env.reset(seed=3)
    events: list[str] = []
    live = []
    noop = np.full(env.action_space.shape, 0, dtype=np.int64)  # type: ignore[arg-type]
    noop[:] = [n // 2 for n in env.action_space.nvec]  # type: ignore[attr-defined]
    for _ in range(8):  # to 120 s: the scripted failure at 61 s
        _, _, _, _, info = env.step(noop)
        events += info["backend_events"]
        live.append(info["raw"]["interactive.ready"] + info["raw"]["interactive.starting"])
    assert any("failed" in e and e.startswith("61.000 s") for e in events), events
    assert live[0] == 2 and min(live) <= 1


def test_an_episode_with_failures_snapshots_exactly(tmp_path: Path) -> None:
    path = _failing(tmp_path)
    for at in (2, 9):
        snapshot_digest(path, 5, at, "global")
