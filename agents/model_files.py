"""Loading PPO models without running code from their files.

Stable-Baselines3 saves a model as a zip whose ``data`` entry is JSON in which some values
(spaces, schedules, the policy class, buffers) are cloudpickled, and ``VecNormalize`` as a pickle:
``PPO.load`` and ``pickle.load`` would run whatever code a crafted file carries. Here:

- **observation statistics** are saved as ``.npz`` beside each model (``ObsNormalizer``: arrays
  only, read with ``allow_pickle=False``); training writes them next to SB3's ``.pkl`` (kept for
  resuming training with SB3);
- **the zip** is loaded with every cloudpickled value of ``data`` replaced by an object built here
  (``safe_custom_objects``): the spaces from the shapes the JSON states in plain text, constant
  schedules, the algorithm's own policy class, empty buffers. Nothing in the file is unpickled; the
  weights are read by ``torch.load(weights_only=True)`` (SB3 does so). A pickled value this list
  does not know, or a model with only a ``.pkl`` of statistics, needs trust:
  ``--trust-model`` (or ``CHIRON_TRUST_MODELS=1``) loads it the plain SB3 way, which runs the
  file's pickles. Give it only to files you made or trust.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from chiron_gym.config import InputError

TRUST_ENV = "CHIRON_TRUST_MODELS"


class UntrustedModel(InputError):
    """Loading this model would run code from its files and trust was not given."""


def trusted() -> bool:
    """Whether the user allowed loading models the plain SB3 way (``CHIRON_TRUST_MODELS=1``;
    the CLI's ``--trust-model`` sets it)."""
    return os.environ.get(TRUST_ENV) == "1"


@dataclass(frozen=True)
class ObsNormalizer:
    """``VecNormalize``'s observation normalisation, frozen (what acting needs)."""

    mean: npt.NDArray[np.float64]
    var: npt.NDArray[np.float64]
    clip_obs: float
    epsilon: float

    @classmethod
    def of(cls, vn: Any) -> ObsNormalizer:
        """From a ``VecNormalize`` (its running statistics now)."""
        return cls(
            np.asarray(vn.obs_rms.mean, dtype=np.float64).copy(),
            np.asarray(vn.obs_rms.var, dtype=np.float64).copy(),
            float(vn.clip_obs),
            float(vn.epsilon),
        )

    def normalize_obs(self, obs: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """As ``VecNormalize.normalize_obs`` (``norm_obs=True``), to the same float32 values."""
        x = np.asarray(obs)
        out = np.clip(
            (x - self.mean) / np.sqrt(self.var + self.epsilon), -self.clip_obs, self.clip_obs
        )
        return out.astype(np.float32)

    def save(self, path: Path) -> None:
        """Arrays only (``np.savez``): loading runs no code."""
        with path.open("wb") as f:
            np.savez(
                f,
                mean=self.mean,
                var=self.var,
                clip_obs=np.float64(self.clip_obs),
                epsilon=np.float64(self.epsilon),
            )

    @classmethod
    def load(cls, path: Path) -> ObsNormalizer:
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    np.asarray(z["mean"], dtype=np.float64),
                    np.asarray(z["var"], dtype=np.float64),
                    float(z["clip_obs"]),
                    float(z["epsilon"]),
                )
        except (OSError, ValueError, KeyError) as e:
            raise InputError(
                f"{path}: not observation statistics (an .npz of mean, var, clip_obs, epsilon): {e}"
            ) from None


def normalizer_name(pkl_name: str) -> str:
    """The ``.npz`` beside SB3's ``.pkl`` of the same statistics."""
    return pkl_name[: -len(".pkl")] + ".npz" if pkl_name.endswith(".pkl") else pkl_name + ".npz"


def save_normalizer(vn: Any, pkl_path: Path) -> None:
    """SB3's pickle (to resume training with SB3) and the ``.npz`` acting loads."""
    vn.save(str(pkl_path))
    ObsNormalizer.of(vn).save(pkl_path.with_name(normalizer_name(pkl_path.name)))


def load_normalizer(pkl_path: Path) -> ObsNormalizer | Any | None:
    """The statistics beside a model: the ``.npz`` if there is one; else the ``.pkl`` (only
    with trust); None if neither exists."""
    npz = pkl_path.with_name(normalizer_name(pkl_path.name))
    if npz.is_file():
        return ObsNormalizer.load(npz)
    if not pkl_path.is_file():
        return None
    if not trusted():
        raise UntrustedModel(
            f"{pkl_path}: observation statistics as a pickle only (no "
            f"{npz.name}); loading it runs code from the file. Pass --trust-model (or set "
            f"{TRUST_ENV}=1) if you made or trust it"
        )
    import pickle

    with pkl_path.open("rb") as f:
        return pickle.load(f)


_EMPTY = ("rollout_buffer_class", "_last_obs", "_last_episode_starts", "_last_original_obs")


def _ints(text: Any, what: str, path: Path) -> list[int]:
    if isinstance(text, list) and all(isinstance(v, int) for v in text):
        return list(text)
    if isinstance(text, str):
        found = re.findall(r"-?\d+", text)
        if found:
            return [int(v) for v in found]
    raise UntrustedModel(f"{path}: data.{what}: cannot read it without unpickling")


def safe_custom_objects(zip_path: Path, algo: Any) -> dict[str, Any]:
    """Replacements for every cloudpickled value of the zip's ``data`` (see the module
    docstring); ``UntrustedModel`` if one is not known here."""
    import gymnasium as gym
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule

    try:
        with zipfile.ZipFile(zip_path) as z:
            data = json.loads(z.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise InputError(f"{zip_path}: not a Stable-Baselines3 model zip ({e})") from None
    if not isinstance(data, dict):
        raise InputError(f"{zip_path}: data: expected a JSON object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not (isinstance(value, dict) and ":serialized:" in value):
            continue
        if key == "observation_space":
            shape = _ints(value.get("_shape"), key, zip_path)
            out[key] = gym.spaces.Box(-np.inf, np.inf, shape=tuple(shape), dtype=np.float32)
        elif key == "action_space":
            out[key] = gym.spaces.MultiDiscrete(_ints(value.get("nvec"), key, zip_path))
        elif key in ("lr_schedule", "clip_range", "clip_range_vf"):
            found = re.findall(r"val=([-0-9.eE+]+)", str(value.get("value_schedule", "")))
            rate = float(found[0]) if found else 0.0
            out[key] = FloatSchedule(ConstantSchedule(rate))
        elif key == "policy_class":
            aliases = algo.policy_aliases
            name = "MlpLstmPolicy" if "MlpLstmPolicy" in aliases else "MlpPolicy"  # RecurrentPPO
            out[key] = aliases[name]
        elif key in _EMPTY:
            out[key] = None
        elif key in ("ep_info_buffer", "ep_success_buffer"):
            out[key] = deque(maxlen=100)
        else:
            raise UntrustedModel(
                f"{zip_path}: data.{key} is a pickled object this loader does not know; "
                f"loading it runs code from the file. Pass --trust-model (or set {TRUST_ENV}=1) "
                "if you made or trust it"
            )
    return out


def load_model(zip_path: Path, algo: Any) -> Any:
    """An SB3 model from ``zip_path`` without unpickling (with trust, the plain SB3 way)."""
    if trusted():
        return algo.load(zip_path, device="cpu")
    return algo.load(zip_path, device="cpu", custom_objects=safe_custom_objects(zip_path, algo))


def check_loadable(zip_path: Path, pkl_path: Path, algo: Any) -> None:
    """Before any episode: ``UntrustedModel`` (or ``InputError``) if loading the model at
    ``zip_path`` with its statistics ``pkl_path`` would need trust it was not given."""
    if trusted():
        return
    safe_custom_objects(zip_path, algo)
    npz = pkl_path.with_name(normalizer_name(pkl_path.name))
    if npz.is_file():
        ObsNormalizer.load(npz)
    elif pkl_path.is_file():
        load_normalizer(pkl_path)  # raises: a pickle only


class TrainError(InputError):
    """Bad training input (hyperparameter file, scenario, arguments) or a model file that
    cannot serve it (an unknown algorithm)."""


def checkpoint_name(zip_name: str) -> tuple[str, str] | None:
    """``ppo_<N>_steps.zip`` (SB3's ``CheckpointCallback``) -> ``("ppo", "<N>")``; else None."""
    m = re.fullmatch(r"(.*)_(\d+)_steps", zip_name.removesuffix(".zip"))
    return (m.group(1), m.group(2)) if m else None


def vecnormalize_name(zip_name: str) -> str:
    """The observation statistics saved beside a model: ``model.zip`` -> ``vecnormalize.pkl``,
    ``best_model.zip`` -> ``best_vecnormalize.pkl``, a checkpoint ``ppo_<N>_steps.zip`` ->
    ``ppo_vecnormalize_<N>_steps.pkl`` (SB3's ``CheckpointCallback``)."""
    checkpoint = checkpoint_name(zip_name)
    if checkpoint:
        return f"{checkpoint[0]}_vecnormalize_{checkpoint[1]}_steps.pkl"
    return zip_name.removesuffix(".zip").replace("model", "vecnormalize") + ".pkl"
