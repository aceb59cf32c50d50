"""SB3's ``VecEnv`` over ``AutoscaleVectorEnv``: N environments trained in this process.

``train(..., vec_env="inline")`` (``chiron train --vec-env inline``) uses it in place of
``SubprocVecEnv``: no pipes, one policy call per N decisions. The environments reset in the same
step, as SB3 expects (``terminal_observation`` and ``TimeLimit.truncated`` in the ended
environment's info); wrap it in ``VecMonitor`` for episode statistics (``train`` does). As in
``DummyVecEnv``, the infos are the environments' own dicts (``info["raw"]`` is what the
environment observed): a callback should not write to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from chiron_gym.envs.vector import AutoscaleVectorEnv


class InlineVecEnv(VecEnv):
    """``num_envs`` environments of ``AutoscaleEnv(**env_kwargs)``, stepped in this process."""

    def __init__(self, num_envs: int, **env_kwargs: Any) -> None:
        self.vector = AutoscaleVectorEnv(
            num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs
        )
        self._actions: np.ndarray = np.zeros(0)
        super().__init__(
            num_envs, self.vector.single_observation_space, self.vector.single_action_space
        )

    def reset(self) -> Any:
        """Reset every environment; the seeds of ``seed()`` apply once, as in ``DummyVecEnv``.
        The options of ``set_options`` are one dict for all (the environments are alike)."""
        if any(o != self._options[0] for o in self._options):
            raise ValueError(
                "InlineVecEnv.reset: set_options gave the environments different "
                "options; one dict for all of them is supported"
            )
        obs, _ = self.vector.reset(seed=self._seeds, options=self._options[0] or None)
        self.reset_infos = [dict(info) for info in self.vector.last_infos]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, _ = self.vector.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = []
        for i, info in enumerate(self.vector.last_infos):
            if dones[i]:  # as DummyVecEnv: the ended episode's info, the new one's saved
                self.reset_infos[i] = {
                    k: v for k, v in info.items() if k not in ("final_obs", "final_info")
                }
                info = dict(info["final_info"], terminal_observation=info["final_obs"])
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos.append(info)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.vector.envs[i], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            setattr(self.vector.envs[i], attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        return [
            getattr(self.vector.envs[i], method_name)(*method_args, **method_kwargs)
            for i in self._get_indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]  # the environments are not wrapped

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


__all__ = ["InlineVecEnv"]
