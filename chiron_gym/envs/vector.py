"""N autoscaling environments stepped together in one process (Gymnasium's vector API).

``gymnasium.make_vec("chiron_gym/Autoscale-v0", num_envs=8, vectorization_mode=
"vector_entry_point", scenario="default")`` builds an ``AutoscaleVectorEnv``; so does the class
itself. No subprocesses: each step runs the N simulators one after another in this process and
writes their observations into one array, so a learner pays one policy call per N decisions and
no inter-process copies (on one core, PPO trains about as fast as with two ``SubprocVecEnv``
workers on two; ``docs/performance.md``, B10 and B6).

Episodes reset themselves as Gymnasium's ``autoreset_mode`` says: ``NEXT_STEP`` (the default, as
``SyncVectorEnv``) or ``SAME_STEP`` (the last observation of an ended episode in
``infos["final_obs"]``, what SB3's ``VecEnv`` expects). Seeds: ``reset(seed=s)`` seeds
environment ``i`` with ``s + i``; later episodes draw from each environment's own stream, so the
same seed and actions give the same steps, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from chiron_gym.envs.autoscale import AutoscaleEnv
from chiron_gym.envs.autoscale_v1 import AutoscaleEnvV1

Obs = npt.NDArray[np.float32]


class AutoscaleVectorEnv(VectorEnv[Obs, npt.NDArray[np.int64], npt.NDArray[Any]]):
    """``num_envs`` copies of ``Autoscale-v0`` (``version=1``: ``Autoscale-v1``) of one scenario,
    with the same keyword arguments (``AutoscaleEnv``'s)."""

    def __init__(
        self,
        num_envs: int,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        version: int = 0,
        **env_kwargs: Any,
    ) -> None:
        self.envs: list[AutoscaleEnv] = []  # before any refusal: ``VectorEnv.__del__`` closes
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        known = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = AutoresetMode.DISABLED
        if mode not in known:
            raise ValueError(
                f"autoreset_mode {autoreset_mode!r}: expected one of "
                f"{', '.join(repr(m.value) for m in known)} (AutoresetMode)"
            )
        if version not in (0, 1):
            raise ValueError(
                f"version must be 0 (Autoscale-v0) or 1 (Autoscale-v1), got {version!r}"
            )
        cls = AutoscaleEnvV1 if version == 1 else AutoscaleEnv
        self.envs = [cls(**env_kwargs) for _ in range(num_envs)]
        first = self.envs[0]
        self.num_envs = num_envs
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, num_envs)
        self.action_space = batch_space(first.action_space, num_envs)
        box = first.observation_space
        assert isinstance(box, spaces.Box)
        self._obs: Obs = np.zeros((num_envs, *box.shape), dtype=np.float32)
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._terminations = np.zeros(num_envs, dtype=np.bool_)
        self._truncations = np.zeros(num_envs, dtype=np.bool_)
        self._ended = np.zeros(num_envs, dtype=np.bool_)  # NEXT_STEP: reset at the next step
        self.last_infos: list[dict[str, Any]] = [{} for _ in range(num_envs)]

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Obs, dict[str, Any]]:
        """Reset every environment (``options["reset_mask"]``: those marked only)."""
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds: list[int | None] = [
                None if seed is None else int(seed) + i for i in range(self.num_envs)
            ]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=...): {len(seeds)} seeds for {self.num_envs} envs")
        opts = dict(options or {})
        mask = opts.pop("reset_mask", None)
        chosen = np.ones(self.num_envs, dtype=np.bool_) if mask is None else np.asarray(mask)
        if chosen.shape != (self.num_envs,) or chosen.dtype != np.bool_:
            raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},)")
        fresh: list[dict[str, Any] | None] = [None] * self.num_envs
        for i in np.flatnonzero(chosen):
            obs, info = self.envs[i].reset(seed=seeds[i], options=opts or None)
            self._obs[i] = obs
            self._ended[i] = False
            self.last_infos[i] = fresh[i] = info
        infos: dict[str, Any] = {}
        for j, new in enumerate(fresh):
            if new is not None:
                infos = self._add_info(infos, new, j)
        return self._obs.copy(), infos

    def step(
        self, actions: npt.NDArray[np.int64]
    ) -> tuple[
        Obs, npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], dict[str, Any]
    ]:
        """Step every environment with its row of ``actions``; reset those whose episode ended,
        as ``autoreset_mode`` says."""
        acts = np.asarray(actions)
        if acts.shape[:1] != (self.num_envs,):
            raise ValueError(
                f"step(): expected one action per environment, shape ({self.num_envs}, "
                f"{self.single_action_space.shape[0] if self.single_action_space.shape else ''}), "
                f"got {acts.shape}"
            )
        same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        for i, env in enumerate(self.envs):
            if self._ended[i]:  # NEXT_STEP: this step resets the episode that ended
                obs, info = env.reset()
                self._rewards[i] = 0.0
                self._terminations[i] = self._truncations[i] = self._ended[i] = False
            else:
                obs, reward, term, trunc, info = env.step(acts[i])
                self._rewards[i] = reward
                self._terminations[i], self._truncations[i] = term, trunc
                if term or trunc:
                    if same_step:
                        final = {"final_obs": obs, "final_info": info}
                        obs, info = env.reset()
                        info = {**info, **final}
                    else:
                        self._ended[i] = True
            self._obs[i] = obs
            self.last_infos[i] = info
        return (
            self._obs.copy(),
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            self._merged_infos(),
        )

    def _merged_infos(self) -> dict[str, Any]:
        """The environments' last infos as the vector API gives them (``_add_info``)."""
        infos: dict[str, Any] = {}
        for i, info in enumerate(self.last_infos):
            infos = self._add_info(infos, info, i)
        return infos

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """Each environment's flat action mask (``AutoscaleEnv.action_masks``), one row each."""
        return np.stack([env.action_masks() for env in self.envs])

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def vector_v1(num_envs: int, **kwargs: Any) -> AutoscaleVectorEnv:
    """``Autoscale-v1``'s vector entry point (``gymnasium.make_vec``)."""
    return AutoscaleVectorEnv(num_envs, version=1, **kwargs)


__all__ = ["AutoscaleVectorEnv", "vector_v1"]
