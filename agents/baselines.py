"""The autoscalers used in production, as agents (``../shared/docs/anchors.md`` section 1).

None of them changes the batch size at run time: they keep each pool's cap and scale instance
counts from vLLM-style metrics, pool by pool (each pool is one deployment). Every rule cites what
it implements; every number is a named parameter with the production default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from agents.base import (
    KV_RULE_ENV,
    N_POOLS,
    BaseAgent,
    Observation,
    PoolView,
    Prediction,
    RuleAgent,
)
from chiron_gym.envs import AgentContext


class StaticAgent(RuleAgent):
    """Fixed pools: the scenario's initial instances and caps, never changed."""

    name = "static"

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        return [0] * N_POOLS, None


class RandomAgent(BaseAgent):
    """Uniformly random actions from a seeded generator (a floor for every table)."""

    name = "random"

    def __init__(self, ctx: AgentContext, seed: int = 0) -> None:
        super().__init__(ctx)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        nvec = np.asarray(self.ctx.nvec)
        return (self.rng.random(len(nvec)) * nvec).astype(np.int64), state


@dataclass
class LlumnixParams:
    """Llumnix's ``avg_load`` policy (Sun et al., OSDI'24; the Chiron paper's baseline)."""

    period_s: float = 10.0  # scaling check interval
    scale_up_below: float = 10.0  # average freeness below this: +1 instance
    scale_down_above: float = 60.0  # average freeness above this: -1 instance


class LlumnixAgent(RuleAgent):
    """Freeness = free KV blocks / requests held per instance; +1 below 10; -1 when the freeness
    without one instance would be above 60."""

    name = "llumnix"
    # Llumnix runs vLLM with its default max_num_seqs: its freeness rule is about KV blocks.
    env_kwargs: ClassVar[dict[str, Any]] = KV_RULE_ENV

    Params = LlumnixParams
    p: LlumnixParams

    def freeness(self, pool: PoolView) -> float:
        st = self.ctx.pools[pool.name]
        if pool.ready < 1:
            return 0.0
        free_blocks = (1.0 - pool.kv_usage) * st.kv_capacity_tokens / st.block_size_tokens
        held_per_instance = pool.held / pool.ready
        return math.inf if held_per_instance <= 0 else free_blocks / held_per_instance

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        out = [0] * N_POOLS
        if not self.every(self.p.period_s):
            return out, None
        for i, pool in self.existing(raw):
            f = self.freeness(pool)
            if f < self.p.scale_up_below:
                out[i] = self.clamp(pool, 1)
            # Llumnix judges a scale-down on the freeness the others would have without one
            # instance (its free blocks gone, its requests spread over the rest)
            elif f * (pool.ready - 1) / max(1.0, pool.ready) > self.p.scale_down_above and (
                pool.starting < 1
            ):
                out[i] = self.clamp(pool, -1)
        return out, None


@dataclass
class QueueThresholdParams:
    """vLLM production-stack's KEDA ScaledObject on ``vllm:num_requests_waiting``."""

    threshold: float = 5.0  # waiting requests per replica (KEDA AverageValue)
    polling_s: float = 15.0  # pollingInterval
    cooldown_s: float = 360.0  # cooldownPeriod (applied to scale-downs)


class QueueThresholdAgent(RuleAgent):
    """desired = ceil(waiting / 5) every 15 s; scale-downs wait 360 s after the last change."""

    name = "queue-threshold"

    Params = QueueThresholdParams
    p: QueueThresholdParams

    def reset(self) -> None:
        super().reset()
        self.last_change = [-math.inf] * N_POOLS

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        out = [0] * N_POOLS
        if not self.every(self.p.polling_s):
            return out, None
        for i, pool in self.existing(raw):
            waiting = pool.waiting + pool.queue
            desired = max(1, math.ceil(waiting / self.p.threshold))
            if desired > pool.live or (
                desired < pool.live and self.t - self.last_change[i] >= self.p.cooldown_s
            ):
                out[i] = self.clamp(pool, desired - pool.live)
            if out[i]:
                self.last_change[i] = self.t
        return out, None


@dataclass
class KvTargetParams:
    """AIBrix APA on ``gpu_cache_usage_perc`` (vllm-project/aibrix ``algorithm/apa.go``)."""

    target: float = 0.5  # targetValue
    tolerance: float = 0.1  # up and down tolerance
    max_rate: float = 2.0  # at most x2 up, /2 down per decision
    scale_down_window_s: float = 300.0  # scale-down-cooldown-window


class KvTargetAgent(RuleAgent):
    """desired = ceil(current x usage / target) outside +-10%, within [current/2, current x 2]."""

    name = "kv-target"
    # APA's rule is about KV usage: it assumes the engine's default max_num_seqs, not our cap.
    env_kwargs: ClassVar[dict[str, Any]] = KV_RULE_ENV

    Params = KvTargetParams
    p: KvTargetParams

    def reset(self) -> None:
        super().reset()
        self.last_change = [-math.inf] * N_POOLS

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        out = [0] * N_POOLS
        p = self.p
        for i, pool in self.existing(raw):
            if pool.live < 1:
                continue
            ratio = pool.kv_usage / p.target
            current = pool.live
            if ratio > 1 + p.tolerance:
                desired = min(math.ceil(current * ratio), math.ceil(current * p.max_rate))
            elif ratio < 1 - p.tolerance:
                if self.t - self.last_change[i] < p.scale_down_window_s:
                    continue
                desired = max(math.ceil(current * ratio), math.floor(current / p.max_rate), 1)
            else:
                continue
            out[i] = self.clamp(pool, desired - current)
            if out[i]:
                self.last_change[i] = self.t
        return out, None


@dataclass
class RayServeParams:
    """Ray Serve's autoscaler on ongoing requests per replica (AutoscalingConfig)."""

    target_ongoing_requests: float = 16.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0


class RayServeAgent(RuleAgent):
    """desired = ceil(ongoing / 16), held 30 s before scaling up and 600 s before scaling down."""

    name = "ray-serve"

    Params = RayServeParams
    p: RayServeParams

    def reset(self) -> None:
        super().reset()
        self.up_since = [math.inf] * N_POOLS
        self.down_since = [math.inf] * N_POOLS

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        out = [0] * N_POOLS
        for i, pool in self.existing(raw):
            desired = max(1, math.ceil(pool.held / self.p.target_ongoing_requests))
            if desired > pool.live:
                self.up_since[i] = min(self.up_since[i], self.t)
                self.down_since[i] = math.inf
                if self.t - self.up_since[i] >= self.p.upscale_delay_s:
                    out[i] = self.clamp(pool, desired - pool.live)
                    self.up_since[i] = math.inf
            elif desired < pool.live:
                self.down_since[i] = min(self.down_since[i], self.t)
                self.up_since[i] = math.inf
                if self.t - self.down_since[i] >= self.p.downscale_delay_s:
                    out[i] = self.clamp(pool, desired - pool.live)
                    self.down_since[i] = math.inf
            else:
                self.up_since[i] = self.down_since[i] = math.inf
        return out, None


@dataclass
class DynamoLoadParams:
    """NVIDIA Dynamo's load-based planner (``docs/architecture/load_planner.md``): its decode
    half (KV-cache utilisation) and its prefill half (requests pending prefill per worker)."""

    adjustment_interval_s: float = 30.0
    kv_up: float = 0.9  # decode-kv-scale-up-threshold
    kv_down: float = 0.5  # decode-kv-scale-down-threshold
    # prefill-queue-scale-up-threshold (pending per worker): 5.0 is the planner code's default
    # (``LoadPlannerDefaults``); its load_planner.md lists 0.5. We follow the code
    prefill_queue_up: float = 5.0
    prefill_queue_down: float = 0.2  # prefill-queue-scale-down-threshold
    hold_after_add: int = 3  # intervals without scale-down after adding


class DynamoLoadAgent(RuleAgent):
    """Every 30 s, per pool (an aggregated worker does both halves): +1 when mean KV usage is
    above 0.9 or requests pending prefill per worker above 5; -1 when KV usage is below 0.5 and
    pending prefill below 0.2 per worker (not within 3 intervals of a +1). One worker per
    adjustment, as the planner does."""

    name = "dynamo-load"
    env_kwargs: ClassVar[dict[str, Any]] = KV_RULE_ENV

    Params = DynamoLoadParams
    p: DynamoLoadParams

    def reset(self) -> None:
        super().reset()
        self.hold = [0] * N_POOLS

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        out = [0] * N_POOLS
        if not self.every(self.p.adjustment_interval_s):
            return out, None
        for i, pool in self.existing(raw):
            if self.hold[i] > 0:
                self.hold[i] -= 1
            pending = (pool.waiting + pool.queue) / max(1.0, pool.ready)
            if (
                pool.kv_usage > self.p.kv_up
                or pending > self.p.prefill_queue_up
                or (pool.ready < 1 and pool.held > 0)
            ):
                out[i] = self.clamp(pool, 1)
                if out[i]:
                    self.hold[i] = self.p.hold_after_add
            elif (
                pool.kv_usage < self.p.kv_down
                and pending < self.p.prefill_queue_down
                and self.hold[i] == 0
                and pool.live > 1
            ):
                out[i] = self.clamp(pool, -1)
        return out, None


BASELINES: dict[str, type] = {
    "static": StaticAgent,
    "llumnix": LlumnixAgent,
    "queue-threshold": QueueThresholdAgent,
    "kv-target": KvTargetAgent,
    "ray-serve": RayServeAgent,
    "dynamo-load": DynamoLoadAgent,
    "random": RandomAgent,
}

__all__ = ["BASELINES"]
