"""The agent protocol: Stable-Baselines3's ``predict``, so one evaluation loop runs them all.

``predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)``. Rule-based
agents are built for an environment's ``AgentContext`` (feature names, action layout, static pool
facts) and read the observation by feature name (``decode``); they keep their own timers in
simulated seconds, counting decision intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from chiron_gym.envs import AgentContext, decode
from chiron_gym.envs.actions import KEEP
from chiron_gym.sim import POOL_NAMES


class Agent(Protocol):
    """Anything with SB3's ``predict``."""

    def predict(
        self,
        observation: npt.NDArray[np.float32],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[npt.NDArray[np.int64], Any]: ...


@dataclass
class PoolView:
    """One pool's numbers, decoded from an observation."""

    name: str
    exists: bool
    ready: float
    starting: float
    batch_cap: float
    running: float
    waiting: float
    kv_usage: float
    queue: float  # the global queue of the class this pool serves first (0 for mixed)

    @property
    def live(self) -> int:
        return round(self.ready + self.starting)

    @property
    def held(self) -> float:
        """Requests at the pool's instances plus its class's global queue."""
        return self.running + self.waiting + self.queue


# Instances a rule agent may move per pool and decision: enough for any rule's jump to its
# desired count (APA doubles, KEDA and Ray Serve jump), so that the env's step limit (the PPO
# action's +-2) never clamps a production rule.
RULE_MAX_STEP = 16
# vLLM's default max_num_seqs: the engine setting a rule that knows nothing of batch caps assumes.
VLLM_DEFAULT_MAX_NUM_SEQS = 256


class RuleAgent:
    """Base of rule-based agents: decoding, timers, and building actions.

    ``env_kwargs`` are the environment settings the rule assumes (``run_episode`` applies them).
    """

    name = "rule"
    env_kwargs: ClassVar[dict[str, Any]] = {"max_step_change": RULE_MAX_STEP}

    def __init__(self, ctx: AgentContext) -> None:
        if ctx.action_mode == "local":
            raise ValueError(
                f"{self.name} sets instance counts: use action_mode 'full' or 'global'"
            )
        self.ctx = ctx
        self.t = 0.0  # simulated seconds since the episode started, counted in intervals
        self.reset()

    def reset(self) -> None:
        """Forget the episode's history (called on ``episode_start``)."""
        self.t = 0.0

    def pools(self, raw: dict[str, float]) -> list[PoolView]:
        out = []
        for p in POOL_NAMES:
            queue = raw.get(f"{p}.queue", 0.0) if p != "mixed" else 0.0
            out.append(
                PoolView(
                    p,
                    raw[f"{p}.exists"] > 0.5,
                    raw[f"{p}.ready"],
                    raw[f"{p}.starting"],
                    raw[f"{p}.batch_cap"],
                    raw[f"{p}.running"],
                    raw[f"{p}.waiting"],
                    raw[f"{p}.kv_usage"],
                    queue,
                )
            )
        return out

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        """Instance change per pool, and cap choices per pool (None: keep)."""
        raise NotImplementedError

    def clamp(self, pool: PoolView, delta: int) -> int:
        st = self.ctx.pools[pool.name]
        k = self.ctx.max_step_change
        delta = max(st.min_instances - pool.live, min(st.max_instances - pool.live, delta))
        return max(-k, min(k, delta))

    def predict(
        self,
        observation: npt.NDArray[np.float32],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[npt.NDArray[np.int64], Any]:
        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        raw = decode(observation, self.ctx.pools)
        deltas, caps = self.decide(raw)
        k = self.ctx.max_step_change
        action: list[int] = []
        if self.ctx.action_mode in ("full", "global"):
            action += [d + k for d in deltas]
        if self.ctx.action_mode == "full":
            action += caps if caps is not None else [KEEP] * 3
        self.t += self.ctx.decision_interval_s
        return np.asarray(action, dtype=np.int64), state

    def every(self, period_s: float) -> bool:
        """True on the decision steps that fall on a ``period_s`` polling grid."""
        dt = self.ctx.decision_interval_s
        if period_s <= dt:
            return True
        return int(self.t // period_s) != int((self.t - dt) // period_s) or self.t == 0.0
