"""The agent protocol: Stable-Baselines3's ``predict``, so one evaluation loop runs them all.

``predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)``. Our agents
derive from ``BaseAgent``: built for an environment's ``AgentContext`` (feature names, action
layout, static pool facts), they forget the episode on ``episode_start``, report their parameters
(``params``, for tables and TensorBoard) and build their action with the layout's ``join`` (the
inverse of the environment's ``split``). Rule-based agents (``RuleAgent``) read the observation by
feature name (``decode``) as one ``PoolView`` per pool, and keep their own timers in simulated
seconds, counting decision intervals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from chiron_gym.envs import AgentContext, decode
from chiron_gym.envs.actions import MAX_TARGET, ActionLayout
from chiron_gym.sim import POOL_NAMES

N_POOLS = len(POOL_NAMES)  # the pool count, from the vocabulary (``sim/request.py``)

Observation = npt.NDArray[np.float32]
Prediction = tuple[npt.NDArray[np.int64], Any]  # (action, recurrent state), as SB3's ``predict``


class Agent(Protocol):
    """Anything with SB3's ``predict``."""

    def predict(
        self,
        observation: Observation,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> Prediction: ...


class BaseAgent:
    """What every agent of ours shares: SB3's ``predict``, ``reset``, ``params`` and ``join``.

    A subclass implements ``act``; one with a parameter record keeps it in ``self.p`` (a
    dataclass), which ``params`` reports.
    """

    name = "agent"
    # the environment settings the agent assumes (``agents.agent_env_kwargs``, ``run_episode``)
    env_kwargs: ClassVar[dict[str, Any]] = {}
    # whether it decides instance changes (a rule), which the target mode cannot take
    decides_changes: ClassVar[bool] = False

    def __init__(self, ctx: AgentContext) -> None:
        if self.decides_changes and ctx.action_mode == "target":
            raise ValueError(
                f"{self.name} sets instance changes: use its own action mode "
                f"({self.env_kwargs.get('action_mode', 'full')!r}), not 'target'"
            )
        self.ctx = ctx
        top = ctx.nvec[0] - 1 if ctx.action_mode == "target" else MAX_TARGET
        self.layout = ActionLayout(ctx.action_mode, ctx.max_step_change, ctx.pool_order, top)

    def reset(self) -> None:
        """Forget the episode's history (called on ``episode_start``)."""

    def params(self) -> dict[str, Any]:
        """Every parameter, for logs and tables."""
        p = getattr(self, "p", None)
        return asdict(p) if p is not None and is_dataclass(p) and not isinstance(p, type) else {}

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        """The action for ``obs`` (``predict`` has reset the agent when ``start`` says so)."""
        raise NotImplementedError

    def predict(
        self,
        observation: Observation,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> Prediction:
        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        return self.act(observation, state, episode_start, deterministic)


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

    @classmethod
    def of(cls, raw: dict[str, float], name: str) -> PoolView:
        """Pool ``name``'s view of the raw features (``decode``)."""
        return cls(
            name,
            raw[f"{name}.exists"] > 0.5,
            raw[f"{name}.ready"],
            raw[f"{name}.starting"],
            raw[f"{name}.batch_cap"],
            raw[f"{name}.running"],
            raw[f"{name}.waiting"],
            raw[f"{name}.kv_usage"],
            raw.get(f"{name}.queue", 0.0) if name != "mixed" else 0.0,
        )

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
# The settings of a rule about KV usage: it assumes the engine's default max_num_seqs, not our cap.
KV_RULE_ENV: dict[str, Any] = {
    "max_step_change": RULE_MAX_STEP,
    "initial_batch_cap": VLLM_DEFAULT_MAX_NUM_SEQS,
}


def check_param(params: object, name: str, ok: bool, expected: str) -> None:
    """Refuse a rule's parameter record whose field ``name`` is not ``ok``, naming it."""
    if not ok:
        value = getattr(params, name)
        raise ValueError(f"{type(params).__name__}.{name} = {value!r}: expected {expected}")


class RuleAgent(BaseAgent):
    """Base of rule-based agents: decoding, timers, and building actions.

    A rule implements ``decide``: instance changes per pool and cap choices (or None: keep).
    """

    name = "rule"
    env_kwargs: ClassVar[dict[str, Any]] = {"max_step_change": RULE_MAX_STEP}
    decides_changes = True
    # the rule's parameter record (a dataclass with every default); ``self.p`` is an instance
    Params: ClassVar[type[Any] | None] = None

    def __init__(self, ctx: AgentContext, params: Any = None) -> None:
        if ctx.action_mode == "local":
            raise ValueError(
                f"{self.name} sets instance counts: use action_mode 'full' or 'global'"
            )
        super().__init__(ctx)
        if self.Params is not None:
            self.p = params if params is not None else self.Params()
        self.t = 0.0  # simulated seconds since the episode started, counted in intervals
        self.reset()

    def reset(self) -> None:
        self.t = 0.0

    def pools(self, raw: dict[str, float]) -> list[PoolView]:
        return [PoolView.of(raw, p) for p in POOL_NAMES]

    def existing(self, raw: dict[str, float]) -> list[tuple[int, PoolView]]:
        """``(index, view)`` of each pool the scenario has."""
        return [(i, v) for i, v in enumerate(self.pools(raw)) if v.exists]

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        """Instance change per pool, and cap choices per pool (None: keep)."""
        raise NotImplementedError

    def clamp(self, pool: PoolView, delta: int) -> int:
        """``delta`` within the pool's bounds and the step limit."""
        k = self.ctx.max_step_change
        return max(-k, min(k, self.ctx.pools[pool.name].clamp(pool.live, delta)))

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        deltas, caps = self.decide(decode(obs, self.ctx.pools))
        self.t += self.ctx.decision_interval_s
        return self.layout.join(deltas, caps), state

    def every(self, period_s: float) -> bool:
        """True on the decision steps that fall on a ``period_s`` polling grid."""
        dt = self.ctx.decision_interval_s
        if period_s <= dt:
            return True
        return int(self.t // period_s) != int((self.t - dt) // period_s) or self.t == 0.0
