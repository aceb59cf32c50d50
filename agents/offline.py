"""The offline-RL agent that acts: a policy ``chiron train offline`` fitted with d3rlpy (issue 43).

The fit runs in its own environment (``agents/train/offline.py``) and exports the greedy policy
as TorchScript (``policy.pt``), which this agent plays with torch alone, d3rlpy not imported, on
observations normalised by the datasets' statistics (``obs_scaling.npz``, ``ObsScaling``).
``ppo:PATH`` plays such a folder as it plays every model ``chiron train`` writes
(``agents/ensemble.py``'s ``model_class`` tells them apart).

The target action's heads are ordinal (instance counts; a cap's halve, keep, increase, double),
so the fit
reads each head's choice ``i`` of ``n`` as the point ``2 i / (n - 1) - 1`` of ``[-1, 1]``
(``encode_actions``) and this agent plays the nearest choice to the policy's point
(``decode_actions``). The environment then takes each count towards its target by at most its
step limit, as for every target-mode agent.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import BaseAgent, Observation, Prediction
from chiron_gym.config import InputError
from chiron_gym.envs import AgentContext

POLICY_FILE = "policy.pt"  # d3rlpy's TorchScript export of the greedy policy
SCALING_FILE = "obs_scaling.npz"
CLIP_OBS = 10.0  # as VecNormalize's, so that the offline policies read what PPO's do


@dataclass(frozen=True)
class ObsScaling:
    """The datasets' observation statistics: ``clip((obs - mean) * scale, +-CLIP_OBS)``.

    A feature that never varied in the datasets gets scale 0: the networks never saw it move, so
    their response to it moving is their initialisation's, not something learned (on a dataset
    of ``static`` alone, a standardised constant feature that moves on another seed drove every
    head to its end).
    """

    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, obs: npt.NDArray[Any]) -> ObsScaling:
        x = np.asarray(obs, dtype=np.float64)
        mean, var = x.mean(axis=0), x.var(axis=0)
        varied = var > 1e-12 * np.maximum(1.0, mean**2)
        scale = np.where(varied, 1.0 / np.sqrt(np.where(varied, var, 1.0) + 1e-8), 0.0)
        return cls(mean, scale)

    @property
    def constant(self) -> int:
        """How many features the datasets held constant (read as 0)."""
        return int((self.scale == 0).sum())

    def __call__(self, obs: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        z = (np.asarray(obs, dtype=np.float64) - self.mean) * self.scale
        return np.clip(z, -CLIP_OBS, CLIP_OBS).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, scale=self.scale)

    @classmethod
    def load(cls, path: Path) -> ObsScaling:
        try:
            with np.load(path) as z:
                return cls(np.asarray(z["mean"]), np.asarray(z["scale"]))
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not observation statistics (mean, scale): {e}") from None


def is_offline_folder(path: str | Path) -> bool:
    """Whether ``path`` is a ``chiron train offline`` folder: its ``train.json`` has the
    ``offline`` record (a leftover ``policy.pt`` beside another model does not make it one)."""
    record = Path(path) / "train.json"
    try:
        meta = json.loads(record.read_text()) if record.is_file() else None
    except (ValueError, UnicodeDecodeError, OSError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("offline"), dict)


def encode_actions(actions: npt.ArrayLike, nvec: list[int]) -> npt.NDArray[np.float32]:
    """Choices (``MultiDiscrete`` ``nvec``) as points of ``[-1, 1]`` per head; a head with one
    choice is 0."""
    a = np.asarray(actions, dtype=np.float64)
    span = np.maximum(np.asarray(nvec, dtype=np.float64) - 1.0, 1.0)
    out = np.where(np.asarray(nvec) > 1, 2.0 * a / span - 1.0, 0.0)
    return out.astype(np.float32)


def decode_actions(points: npt.ArrayLike, nvec: list[int]) -> npt.NDArray[np.int64]:
    """The nearest choice of each head to a policy's points (clipped to the head's range)."""
    p = np.clip(np.asarray(points, dtype=np.float64), -1.0, 1.0)
    n = np.asarray(nvec, dtype=np.int64)
    span = np.maximum(n - 1, 1).astype(np.float64)
    return np.clip(np.rint((p + 1.0) / 2.0 * span), 0, n - 1).astype(np.int64)


class OfflineAgent(BaseAgent):
    """A d3rlpy policy (TorchScript) with the agents' ``predict``; always greedy."""

    name = "offline"

    def __init__(
        self, policy: Any, nvec: list[int], scaling: ObsScaling, ctx: AgentContext | None = None
    ) -> None:
        self.policy = policy
        self.nvec = [int(n) for n in nvec]
        self.scaling = scaling
        self.n_obs = len(scaling.mean)
        if ctx is not None:
            super().__init__(ctx)
            want = [int(n) for n in ctx.nvec]
            if want != self.nvec:
                raise ValueError(
                    f"the offline policy acts on {self.nvec} but the environment expects {want} "
                    f"(action_mode {ctx.action_mode!r}): play it in its training record's mode"
                )

    @classmethod
    def files(cls, path: str | Path) -> tuple[Path, dict[str, Any]]:
        """``(policy.pt, train.json)`` of a ``chiron train offline`` folder."""
        folder = Path(path)
        policy = folder / POLICY_FILE
        record = folder / "train.json"
        if not all(f.is_file() for f in (policy, record, folder / SCALING_FILE)):
            raise InputError(
                f"{folder}: no offline policy here ({POLICY_FILE}, {SCALING_FILE} and "
                "train.json; train one: chiron train offline)"
            )
        try:
            meta = json.loads(record.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"{record}: not a JSON training record ({e})") from None
        off = meta.get("offline") if isinstance(meta, dict) else None
        if not isinstance(off, dict) or not isinstance(off.get("nvec"), list):
            raise InputError(
                f"{record}: expected chiron train offline's record (an 'offline' key with 'nvec')"
            )
        return policy, meta

    @classmethod
    def check(cls, path: str | Path) -> None:
        """Fail before any episode if the folder is not a complete offline policy."""
        cls.files(path)

    @classmethod
    def load(cls, path: str | Path, ctx: AgentContext | None = None) -> OfflineAgent:
        """A TorchScript program, not a pickle: loading it runs no Python from the file."""
        import torch

        policy_file, meta = cls.files(path)
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, d3rlpy's export
            warnings.simplefilter("ignore", DeprecationWarning)
            policy = torch.jit.load(str(policy_file), map_location="cpu")  # type: ignore[no-untyped-call]
        policy.eval()
        scaling = ObsScaling.load(policy_file.with_name(SCALING_FILE))
        return cls(policy, list(meta["offline"]["nvec"]), scaling, ctx)

    def reset(self) -> None:
        pass  # no state between decisions

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        import torch

        raw = np.asarray(obs, dtype=np.float32)
        # features are only ever appended (docs/env.md): the policy reads the prefix it knows
        x = self.scaling(raw[..., : self.n_obs])
        batch = x if x.ndim == 2 else x[None]
        with torch.no_grad():
            points = self.policy(torch.as_tensor(np.ascontiguousarray(batch))).numpy()
        action = decode_actions(points, self.nvec)
        return (action if x.ndim == 2 else action[0]), state


__all__ = [
    "POLICY_FILE",
    "SCALING_FILE",
    "ObsScaling",
    "OfflineAgent",
    "decode_actions",
    "encode_actions",
    "is_offline_folder",
]
