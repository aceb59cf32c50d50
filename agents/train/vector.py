"""SB3's ``VecEnv`` over ``AutoscaleVectorEnv``: N environments trained in this process
(``InlineVecEnv``), or split over one process per core (``ShardedVecEnv``).

``train(..., vec_env="inline")`` (``chiron train --vec-env inline``) uses it in place of
``SubprocVecEnv``: no pipes, one policy call per N decisions. The environments reset in the same
step, as SB3 expects (``terminal_observation`` and ``TimeLimit.truncated`` in the ended
environment's info); wrap it in ``VecMonitor`` for episode statistics (``train`` does). As in
``DummyVecEnv``, the infos are the environments' own dicts (``info["raw"]`` is what the
environment observed): a callback should not write to them.

``train(..., vec_env="shards")`` splits the N environments evenly over one worker process per
core, each stepping its share as one ``InlineVecEnv``: one pipe message per worker and step
instead of one per environment (``SubprocVecEnv``), and the cores step in parallel. Environment
``i`` gets the seed ``InlineVecEnv`` would give it, so the same seed and actions give the same
episodes whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
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


def _shard(pipe: Connection, num_envs: int, env_kwargs: dict[str, Any]) -> None:
    """A worker of ``ShardedVecEnv``: its share of the environments, stepped in one
    ``InlineVecEnv``, answering the commands of its pipe until ``close``."""
    env = InlineVecEnv(num_envs, **env_kwargs)
    while True:
        cmd, data = pipe.recv()
        try:
            if cmd == "step":
                env.step_async(data)
                out: Any = env.step_wait()
            elif cmd == "reset":
                env._seeds, env._options = data
                out = (env.reset(), env.reset_infos)
            elif cmd == "spaces":
                out = (env.observation_space, env.action_space)
            elif cmd == "get_attr":
                out = env.get_attr(*data)
            elif cmd == "set_attr":
                env.set_attr(*data)
                out = None
            elif cmd == "env_method":
                name, args, kwargs, indices = data
                out = env.env_method(name, *args, indices=indices, **kwargs)
            else:  # close
                env.close()
                pipe.send(("ok", None))
                return
        except Exception:
            pipe.send(("error", traceback.format_exc()))
            continue
        pipe.send(("ok", out))


class ShardedVecEnv(VecEnv):
    """``num_envs`` environments of ``AutoscaleEnv(**env_kwargs)`` split evenly over ``workers``
    processes (see the module docstring)."""

    def __init__(self, num_envs: int, workers: int, **env_kwargs: Any) -> None:
        if not 1 <= workers <= num_envs:
            raise ValueError(f"ShardedVecEnv: workers must be in [1, {num_envs}], got {workers}")
        methods = mp.get_all_start_methods()
        ctx: Any = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        sizes = [num_envs // workers + (i < num_envs % workers) for i in range(workers)]
        self._bounds = [(sum(sizes[:i]), sum(sizes[: i + 1])) for i in range(workers)]
        self._pipes: list[Connection] = []
        self._procs: list[Any] = []
        self.closed = False
        for size in sizes:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_shard, args=(child, size, env_kwargs), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)
        obs_space, action_space = self._ask([("spaces", None)])[0]
        super().__init__(num_envs, obs_space, action_space)

    def _ask(self, messages: list[tuple[str, Any]], pipes: list[Connection] | None = None) -> Any:
        """Send each worker its message; their answers, in order (a worker's error raised)."""
        pipes = self._pipes[: len(messages)] if pipes is None else pipes
        for pipe, message in zip(pipes, messages, strict=True):
            pipe.send(message)
        return self._recv(pipes)

    def _recv(self, pipes: list[Connection]) -> list[Any]:
        answers = []
        for pipe in pipes:
            status, out = pipe.recv()
            if status == "error":
                k = self._pipes.index(pipe)
                raise RuntimeError(f"ShardedVecEnv worker {k} failed:\n{out}")
            answers.append(out)
        return answers

    def reset(self) -> Any:
        answers = self._ask(
            [("reset", (self._seeds[a:b], self._options[a:b])) for a, b in self._bounds]
        )
        self.reset_infos = [info for _, infos in answers for info in infos]
        self._reset_seeds()
        self._reset_options()
        return np.concatenate([obs for obs, _ in answers])

    def step_async(self, actions: np.ndarray) -> None:
        for pipe, (a, b) in zip(self._pipes, self._bounds, strict=True):
            pipe.send(("step", actions[a:b]))

    def step_wait(self) -> VecEnvStepReturn:
        answers = self._recv(self._pipes)
        obs, rewards, dones, infos = zip(*answers, strict=True)
        return (
            np.concatenate(obs),
            np.concatenate(rewards),
            np.concatenate(dones),
            [info for part in infos for info in part],
        )

    def _by_worker(self, indices: VecEnvIndices) -> list[tuple[int, list[int]]]:
        """The workers that hold ``indices``, each with its own (local) indices."""
        out: list[tuple[int, list[int]]] = []
        for i in self._get_indices(indices):
            k = next(k for k, (a, b) in enumerate(self._bounds) if a <= i < b)
            if not out or out[-1][0] != k:
                out.append((k, []))
            out[-1][1].append(i - self._bounds[k][0])
        return out

    def _each(self, indices: VecEnvIndices, cmd: str, make: Any) -> list[Any]:
        parts = self._by_worker(indices)
        pipes = [self._pipes[k] for k, _ in parts]
        answers = self._ask([(cmd, make(local)) for _, local in parts], pipes)
        return [x for answer in answers for x in (answer or [])]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._each(indices, "get_attr", lambda local: (attr_name, local))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._each(indices, "set_attr", lambda local: (attr_name, value, local))

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        return self._each(
            indices, "env_method", lambda local: (method_name, method_args, method_kwargs, local)
        )

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]  # the environments are not wrapped

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]

    def close(self) -> None:
        if self.closed:
            return
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close", None))
        for pipe, proc in zip(self._pipes, self._procs, strict=True):
            with contextlib.suppress(OSError, EOFError):
                pipe.recv()
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        self.closed = True


__all__ = ["InlineVecEnv", "ShardedVecEnv"]
