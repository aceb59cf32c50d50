"""Offline RL from the datasets (``chiron train offline``; issue 43, item 3), with d3rlpy.

It reads ``chiron dataset --action-space target`` datasets (Minari; one action space for every
teacher: Chiron, static, the planners), states their coverage, and fits one of d3rlpy's offline
algorithms to them: IQL (implicit Q-learning), CQL (conservative Q-learning) or TD3+BC, all
continuous-action. The target action's heads are ordinal (instance counts; a cap's down, keep,
up), so each head's choice is a point of ``[-1, 1]`` (``agents.offline.encode_actions``) and the
agent plays the nearest choice to the policy's point.

d3rlpy 2.8 pins gymnasium 1.0.0 (and imports gym 0.26), which this environment (gymnasium 1.4,
SB3) cannot share. The fit therefore runs in its own environment, ``.venv-offline`` (``make
offline-env``; ``make test`` builds it), as vLLM runs in ``.venv-vllm``: this side writes the
transitions to an ``.npz`` and runs ``agents/train/d3rlpy_fit.py`` there, showing its epochs as
a progress bar and writing them to TensorBoard (``OUT/tb/offline``). The observations are
normalised here (``OUT/obs_scaling.npz``; features the datasets held constant read as 0), and the
fit exports the greedy policy as TorchScript (``OUT/policy.pt``), which ``agents/offline.py``
plays with torch alone: ``ppo:OUT`` (every model ``chiron train`` writes is played so).

As with cloning (``agents/train/bc.py``), the policy sees the observation only, and it is scored
on traffic seeds and scenarios the datasets did not hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.model_files import TrainError
from agents.offline import POLICY_FILE, SCALING_FILE, ObsScaling, encode_actions
from agents.train.bc import Demonstrations, load_demonstrations

ALGOS = ("iql", "cql", "td3+bc")
FIT_SCRIPT = Path(__file__).with_name("d3rlpy_fit.py")
PREFIX = "@@chiron "  # the fit's progress lines (agents/train/d3rlpy_fit.py)
REPO = Path(__file__).resolve().parents[2]


def offline_python() -> Path:
    """The Python of the offline environment: ``$CHIRON_OFFLINE_PYTHON``, else the checkout's
    ``.venv-offline``."""
    env = os.environ.get("CHIRON_OFFLINE_PYTHON")
    return Path(env) if env else REPO / ".venv-offline" / "bin" / "python"


def coverage(demo: Demonstrations) -> dict[str, Any]:
    """What the datasets cover of the action space: per head the choices seen (of how many)
    and their range, the distinct joint actions, and how often a teacher changed its action
    from one decision to the next."""
    actions = np.concatenate(demo.actions)
    heads = [
        {
            "choices": int(n),
            "seen": len(np.unique(actions[:, i])),
            "range": [int(actions[:, i].min()), int(actions[:, i].max())],
        }
        for i, n in enumerate(demo.nvec)
    ]
    changed = sum(int(np.any(a[1:] != a[:-1], axis=1).sum()) for a in demo.actions)
    decisions = sum(max(0, len(a) - 1) for a in demo.actions)
    return {
        "steps": demo.steps,
        "episodes": len(demo.actions),
        "teachers": demo.sources,
        "heads": heads,
        "distinct_actions": len(np.unique(actions, axis=0)),
        "share_of_decisions_changing_the_action": round(changed / max(1, decisions), 4),
    }


@dataclass(frozen=True)
class OfflineResult:
    out: Path
    steps: int  # dataset steps
    wall_s: float
    coverage: dict[str, Any]


def _spaces(demo: Demonstrations) -> tuple[int, list[int]]:
    """The datasets' environment's observation size and action space, checked against theirs."""
    from agents.train.ppo import check_scenario, env_factory

    scenario = str(demo.env_kwargs["scenario"])
    check_scenario(scenario)
    env = env_factory(scenario, "target", demo.settings)()
    try:
        demo.check_spaces(env.observation_space, env.action_space)
        return int(env.observation_space.shape[0]), [int(n) for n in env.action_space.nvec]
    finally:
        env.close()


def _follow(lines: Any, tb: Any, bar: Any, done: dict[str, Any]) -> None:
    """The fit's output: progress lines to the bar and TensorBoard, its end into ``done``, the
    rest (d3rlpy's own messages) to stderr."""
    for line in lines:
        if not line.startswith(PREFIX):
            sys.stderr.write(line)
            continue
        msg = json.loads(line[len(PREFIX) :])
        if msg.get("done"):
            done.update(msg)
            continue
        for k, v in msg["metrics"].items():
            tb.add_scalar(f"offline/{k}", v, msg["step"])
        bar.update(msg["step"] - bar.n)
        bar.set_postfix({k: f"{v:.3g}" for k, v in list(msg["metrics"].items())[:2]})


def _fit(python: Path, args: list[str], out: Path, steps: int, progress: bool) -> dict[str, Any]:
    """Run the fit in the offline environment; its epochs as progress and TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    cmd = [str(python), str(FIT_SCRIPT), *args]
    done: dict[str, Any] = {}
    tb = SummaryWriter(str(out / "tb" / "offline"))
    bar = tqdm(total=steps, unit="step", disable=not progress, dynamic_ncols=True)
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            try:
                _follow(proc.stdout, tb, bar, done)
            except BaseException:
                proc.kill()  # not left to finish an epoch nobody reads
                raise
        if proc.returncode != 0 or not done:
            raise TrainError(
                f"the d3rlpy fit failed (exit {proc.returncode}; its messages are above): "
                + " ".join(cmd)
            )
    finally:
        bar.close()
        tb.close()
    return done


def train_offline(
    data: Path,
    dataset_ids: list[str],
    out: Path,
    *,
    algo: str = "iql",
    steps: int = 30_000,
    seed: int = 0,
    hidden: tuple[int, ...] = (256, 256),
    batch_size: int = 256,
    python: Path | None = None,
    progress: bool = True,
) -> OfflineResult:
    """Fit ``algo`` (d3rlpy) to the datasets ``dataset_ids`` of ``data``; ``OUT/policy.pt``."""
    if algo not in ALGOS:
        raise TrainError(f"--algo {algo!r}: expected one of {', '.join(ALGOS)}")
    if steps < 1 or batch_size < 1 or not hidden or min(hidden) < 1:
        raise TrainError(
            f"--steps {steps}, --batch-size {batch_size}, --hidden {list(hidden)}: each must "
            "be >= 1 (and --hidden name at least one width)"
        )
    py = python or offline_python()
    if not py.is_file():
        raise TrainError(
            f"{py}: no Python of the offline environment (d3rlpy pins gymnasium 1.0.0, so it "
            "lives apart): make offline-env, or set CHIRON_OFFLINE_PYTHON"
        )
    t0 = time.perf_counter()
    demo = load_demonstrations(data, dataset_ids)
    n_obs, nvec = _spaces(demo)
    cover = coverage(demo)
    rewards = np.concatenate(demo.rewards)
    scale = float(np.std(rewards)) or 1.0
    timeouts = np.concatenate([np.eye(1, len(a), len(a) - 1)[0] for a in demo.actions])
    observations = np.concatenate(demo.obs)
    scaling = ObsScaling.fit(observations)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train.json", POLICY_FILE, SCALING_FILE):  # an earlier fit's: never mixed in
        (out / name).unlink(missing_ok=True)
    scaling.save(out / SCALING_FILE)
    with tempfile.TemporaryDirectory(prefix="chiron-offline-") as tmp:
        npz = Path(tmp) / "transitions.npz"
        np.savez(
            npz,
            observations=scaling(observations),
            actions=encode_actions(np.concatenate(demo.actions), nvec),
            rewards=(rewards / scale).astype(np.float32),
            terminals=np.zeros(len(rewards), dtype=np.float32),  # episodes end by time only
            timeouts=timeouts.astype(np.float32),
        )
        args = [str(npz), str(out), "--algo", algo, "--steps", str(steps), "--seed", str(seed)]
        args += ["--hidden", ",".join(map(str, hidden)), "--batch-size", str(batch_size)]
        done = _fit(py, args, out, steps, progress)
    if not (out / POLICY_FILE).is_file():
        raise TrainError(f"{out / POLICY_FILE}: the fit wrote no policy")
    wall = time.perf_counter() - t0
    env_kwargs = demo.settings
    record = {
        "scenario": demo.env_kwargs["scenario"],
        "seed": seed,
        "algo": algo,
        "action_mode": "target",
        "env_kwargs": env_kwargs,
        "residual": None,
        "n_envs": 0,
        "timesteps": 0,  # no environment step: what it learned from is ``offline``
        "wall_s": round(wall, 1),
        "offline": {
            "library": done.get("versions"),
            "datasets": demo.sources,
            "coverage": cover,
            "steps": steps,
            "gradient_steps": done.get("steps"),  # whole epochs of the fit: at most ``steps``
            "batch_size": batch_size,
            "hidden": list(hidden),
            "reward_scale": scale,
            "nvec": nvec,
            "observation_features": n_obs,
            "constant_features": scaling.constant,  # read as 0 (agents/offline.py)
            "action_encoding": "choice i of n heads -> 2 i / (n - 1) - 1; played: the nearest",
        },
    }
    (out / "train.json").write_text(json.dumps(record, indent=1) + "\n")
    return OfflineResult(out, demo.steps, wall, cover)


__all__ = ["ALGOS", "OfflineResult", "coverage", "offline_python", "train_offline"]
