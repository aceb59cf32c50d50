"""``spot-hedge``: SkyServe's replica policy over spot and on-demand capacity (issue 42).

SkyServe (Mao et al., "SkyServe: Serving AI Models across Regions and Clouds with Spot
Instances", arXiv 2411.01438) serves from spot replicas, over-provisioned against preemptions,
and falls back to on-demand replicas while spot ones are missing (its policy, SpotHedge). As
one SkyPilot version implements it (``sky/serve/autoscalers.py``, ``RequestRateAutoscaler`` and
``SpotOnDemandRequestRateAutoscaler``, whose floor is ``extra_on_demand_replicas`` and whose
fallback is always on; defaults in ``sky/serve/constants.py``). Later versions name the floor
``base_ondemand_fallback_replicas`` and make the fallback optional
(``dynamic_ondemand_fallback``, ``FallbackRequestRateAutoscaler``, which also counts the floor
in the target); we keep the older arithmetic with the later names:

- the **target** replica count is ``ceil(requests/s over the last 60 s / target_qps_per_replica)``
  within the bounds, changed only after it has stayed above the current target for
  ``upscale_delay_seconds`` (300) or below it for ``downscale_delay_seconds`` (1,200);
- **spot** replicas: ``target + num_overprovision``, launched or removed to match;
- **on-demand** replicas: ``max(base_ondemand_fallback_replicas, min(target, target +
  num_overprovision - ready spot replicas))``: the spot replicas not ready yet (starting,
  reclaimed, refused by a stockout) are covered on demand (``dynamic_ondemand_fallback``), and
  a floor of on-demand replicas always runs.

Here the on-demand pool is the interactive pool and the spot pool the mixed one (a pool with
``reclaims_per_hour > 0``); the batch pool keeps its instances (SkyServe has no batch class).
What SkyServe leaves to the operator is ours, from the profile: ``target_qps_per_replica`` is
80 % of the requests per second one instance sustains at its cap with the scenario's interactive
lengths. ``docs/agents.md`` cites each rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.base import RULE_MAX_STEP, PoolView, RuleAgent, check_param
from agents.profile_queries import prefill_alone_s
from chiron_gym.envs import AgentContext
from chiron_gym.scenario import Scenario
from chiron_gym.sim import BatchComposition, Pool, PoolSpec


@dataclass
class SpotHedgeParams:
    """SkyServe's replica policy (``sky/serve/constants.py``, ``service_spec``)."""

    target_qps_per_replica: float = 0.0  # 0 (ours): 80 % of an instance's profiled rate
    target_share: float = 0.8  # (ours) the share of the profiled rate taken as the target
    upscale_delay_s: float = 300.0  # AUTOSCALER_DEFAULT_UPSCALE_DELAY_SECONDS
    downscale_delay_s: float = 1200.0  # AUTOSCALER_DEFAULT_DOWNSCALE_DELAY_SECONDS
    num_overprovision: int = 1  # (ours: the SkyPilot default was not at hand) spot replicas more
    # the on-demand floor: ``extra_on_demand_replicas`` in the class followed (1: the SkyPilot
    # docs' example of ``base_ondemand_fallback_replicas``)
    base_ondemand_fallback_replicas: int = 1
    dynamic_ondemand_fallback: bool = True  # off: the floor only (the later versions' option)

    def __post_init__(self) -> None:
        check_param(self, "target_qps_per_replica", self.target_qps_per_replica >= 0, ">= 0")
        check_param(self, "target_share", 0 < self.target_share <= 1, "a number in (0, 1]")
        check_param(self, "upscale_delay_s", self.upscale_delay_s >= 0, "a number >= 0")
        check_param(self, "downscale_delay_s", self.downscale_delay_s >= 0, "a number >= 0")
        check_param(self, "num_overprovision", self.num_overprovision >= 0, "an integer >= 0")
        n = self.base_ondemand_fallback_replicas
        check_param(self, "base_ondemand_fallback_replicas", n >= 0, "an integer >= 0")


def requests_per_s(spec: PoolSpec, prompt: float, output: float) -> float:
    """Requests per second one instance of ``spec`` sustains at its cap: ``n = min(cap, what
    the KV cache holds)`` requests decode at context ``prompt + output / 2``, and each costs its
    prompt's prefill alone: ``1 / (t_prefill + output x t_decode(n) / n)``."""
    inst = spec.instance
    p, o = max(1, round(prompt)), max(1, round(output))
    n = max(1, min(spec.initial_batch_cap, inst.kv_capacity_tokens // (p + o)))
    model = inst.perf_model
    t_dec = model.iteration_time_s(BatchComposition.with_decodes([], [], [p + o // 2] * n))
    return 1.0 / (prefill_alone_s(inst, p) + o * t_dec / n)


def _interactive_lengths(sc: Scenario) -> tuple[float, float]:
    for src in sc.sources:
        if src.klass == 0 and src.prompt is not None and src.output is not None:
            return src.prompt.mean, src.output.mean
    return 1024.0, 256.0


class SpotHedgeAgent(RuleAgent):
    """On-demand floor, spot for the rest, on-demand while spot is missing (SkyServe)."""

    name = "spot-hedge"
    env_kwargs: ClassVar[dict[str, Any]] = {"max_step_change": RULE_MAX_STEP}
    Params = SpotHedgeParams
    p: SpotHedgeParams

    def __init__(self, ctx: AgentContext, params: Any = None) -> None:
        sc = ctx.scenario
        on_demand = sc.pool_spec(Pool.INTERACTIVE) if sc is not None else None
        spot = sc.pool_spec(Pool.MIXED) if sc is not None else None
        if sc is None or on_demand is None or spot is None or spot.reclaims_per_hour <= 0:
            name = sc.name if sc is not None else "?"
            raise ValueError(
                f"scenario {name!r}: spot-hedge needs an on-demand interactive pool and a spot "
                "mixed pool (reclaims_per_hour > 0), as spot-mix has"
            )
        self.spot_spec, self.on_demand_spec = spot, on_demand
        self.prompt, self.output = _interactive_lengths(sc)
        super().__init__(ctx, params)

    def reset(self) -> None:
        super().reset()
        p = self.p
        qps = p.target_qps_per_replica or p.target_share * requests_per_s(
            self.spot_spec, self.prompt, self.output
        )
        self.qps = qps
        start = self.on_demand_spec.initial_instances + self.spot_spec.initial_instances
        self.target = max(1, start - p.num_overprovision)  # SkyServe's init_replicas: ours
        self.up_s = self.down_s = 0.0

    def _desired(self, raw: dict[str, float], bounds: tuple[int, int]) -> int:
        """SkyServe's ``_get_desired_num_replicas``: the target, moved after its delays."""
        dt = self.ctx.decision_interval_s
        want = math.ceil(raw["interactive.arrival_rate_1m"] / self.qps - 1e-9)
        want = max(bounds[0], min(bounds[1], want))
        if want > self.target:
            self.up_s, self.down_s = self.up_s + dt, 0.0
            if self.up_s >= self.p.upscale_delay_s:
                self.target, self.up_s = want, 0.0
        elif want < self.target:
            self.down_s, self.up_s = self.down_s + dt, 0.0
            if self.down_s >= self.p.downscale_delay_s:
                self.target, self.down_s = want, 0.0
        else:
            self.up_s = self.down_s = 0.0
        return self.target

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        od, spot = PoolView.of(raw, "interactive"), PoolView.of(raw, "mixed")
        b_od, b_spot = self.ctx.pools["interactive"], self.ctx.pools["mixed"]
        bounds = (1, b_od.max_instances + b_spot.max_instances)
        target = self._desired(raw, bounds)
        provision = target + self.p.num_overprovision
        od_target = self.p.base_ondemand_fallback_replicas
        if self.p.dynamic_ondemand_fallback and spot.ready < provision:
            od_target = max(od_target, min(target, provision - round(spot.ready)))
        out = [0] * len(self.ctx.pools)
        out[0] = self.clamp(od, od_target - od.live)
        out[1] = self.clamp(spot, provision - spot.live)
        return out, None


SPOT_AGENTS: dict[str, type] = {"spot-hedge": SpotHedgeAgent}

__all__ = ["SPOT_AGENTS", "SpotHedgeAgent", "SpotHedgeParams", "requests_per_s"]
