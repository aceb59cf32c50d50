"""Planners of disaggregated serving (``chiron_gym/Autoscale-v1``): Dynamo's SLA
planner and a decode-throughput rule after HeteroScale.

``dynamo-sla`` follows NVIDIA Dynamo's SLA planner (``components/planner/.../planner_core.py``
and ``docs/planner/sla_planner.md``; ``docs/agents.md`` cites each rule): every adjustment
interval (180 s) it predicts the next interval's requests, prompt and output lengths, corrects
the profiled latencies by what it observed, and sets the prefill and decode replica counts from
the profiled capacity per GPU. ``heteroscale`` scales the decode pool in proportion to decode
tokens per second and the prefill pool at a fixed ratio to it, with a latency trigger, as
secondary sources describe ByteDance's HeteroScale (arXiv 2508.19559; the paper's own formula
was not at hand: ``docs/agents.md`` says what is whose). Both read the profile the simulator
runs (``DecodeProfile``): Dynamo profiles the engine before deployment, and so do we.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from agents.base import RULE_MAX_STEP, PoolView, RuleAgent, check_param
from agents.load_predictors import predictor
from agents.profile_queries import prefill_alone_s
from chiron_gym.envs import AgentContext
from chiron_gym.sim import BatchComposition, InstanceSpec, Pool

PD_ENV: dict[str, Any] = {"max_step_change": RULE_MAX_STEP}


class Profile:
    """What Dynamo's pre-deployment profiling measures, from the simulator's profile: a
    prefill instance's TTFT alone at a prompt length, a decode instance's ITL at a batch and
    context, and the best decode throughput per GPU whose ITL meets a target."""

    def __init__(self, prefill: InstanceSpec, decode: InstanceSpec, decode_cap: int) -> None:
        self.prefill, self.decode = prefill, decode
        self.decode_cap = decode_cap  # the decode pool's batch cap (these planners keep it)
        self._best: dict[tuple[float, int], float] = {}

    def ttft_s(self, isl: float) -> float:
        """One prompt of ``isl`` tokens alone on a prefill instance, chunk by chunk."""
        return prefill_alone_s(self.prefill, isl)

    def prefill_tokens_per_gpu_s(self, isl: float) -> float:
        return isl / self.ttft_s(isl) / self.prefill.gpus

    def itl_s(self, batch: int, context: float) -> float:
        ctx = max(1, round(context))
        return self.decode.perf_model.iteration_time_s(
            BatchComposition.with_decodes([], [], [ctx] * max(1, batch))
        )

    def max_batch(self, context: float) -> int:
        """The most requests of ``context`` tokens a decode instance holds (cap and KV)."""
        kv = self.decode.kv_capacity_tokens // max(1, round(context))
        return max(1, min(self.decode_cap, kv))

    def decode_tokens_per_gpu_s(self, itl_target_s: float, context: float) -> float:
        """The largest batch whose ITL is within ``itl_target_s`` (none: one request), its
        tokens per second per GPU (Dynamo's ``find_best_throughput_per_gpu``)."""
        key = (round(itl_target_s, 6), max(1, round(context)))
        hit = self._best.get(key)
        if hit is not None:
            return hit
        lo, hi = 1, self.max_batch(context)
        if self.itl_s(lo, context) > itl_target_s:
            hi = lo
        while lo < hi:  # ITL grows with the batch: the largest batch within the target
            mid = (lo + hi + 1) // 2
            if self.itl_s(mid, context) <= itl_target_s:
                lo = mid
            else:
                hi = mid - 1
        value = lo / self.itl_s(lo, context) / self.decode.gpus
        self._best[key] = value
        return value


def profile_of(ctx: AgentContext) -> Profile:
    sc = ctx.scenario
    pre = sc.pool_spec(Pool.PREFILL) if sc is not None else None
    dec = sc.pool_spec(Pool.DECODE) if sc is not None else None
    if pre is None or dec is None:
        name = sc.name if sc is not None else "?"
        raise ValueError(
            f"scenario {name!r} has no prefill and decode pools, which this planner scales: "
            "run it on a disaggregated scenario (chiron scenarios: disaggregated/...)"
        )
    return Profile(pre.instance, dec.instance, dec.initial_batch_cap)


class PdRule(RuleAgent):
    """Base of the P/D planners: the prefill and decode pools' views, targets as actions."""

    env_kwargs: ClassVar[dict[str, Any]] = PD_ENV

    def __init__(self, ctx: AgentContext, params: Any = None) -> None:
        self.profile = profile_of(ctx)
        super().__init__(ctx, params)

    def pd(self, raw: dict[str, float]) -> tuple[PoolView, PoolView]:
        return PoolView.of(raw, "prefill"), PoolView.of(raw, "decode")

    def to(self, raw: dict[str, float], prefill: int | None, decode: int | None) -> list[int]:
        """The action's instance changes for target counts (None: keep)."""
        names = list(self.ctx.pools)
        out = [0] * len(names)
        for view, want in zip(self.pd(raw), (prefill, decode), strict=True):
            if want is not None:
                out[names.index(view.name)] = self.clamp(view, want - view.live)
        return out


@dataclass
class DynamoSlaParams:
    """Dynamo's SLA planner (``defaults.py``, ``planner_core.py``)."""

    adjustment_interval_s: float = 180.0  # --adjustment-interval
    # --load-predictor: Dynamo's default is "arima" (pmdarima's auto_arima, refit each
    # interval); we offer "constant" (the last value) and "kalman" (its local linear trend)
    load_predictor: str = "kalman"
    min_endpoint: int = 1  # --min-endpoint
    correction: bool = True  # off with --no-correction
    # --max-gpu-budget: the scenario's GPU budget (0: none). Dynamo's default is 8 GPUs
    max_gpu_budget: int = 0

    def __post_init__(self) -> None:
        check_param(self, "adjustment_interval_s", self.adjustment_interval_s > 0, "a number > 0")
        check_param(self, "min_endpoint", self.min_endpoint >= 1, "an integer >= 1")
        check_param(self, "max_gpu_budget", self.max_gpu_budget >= 0, "an integer >= 0 (0: none)")
        predictor(self.load_predictor)  # a clear error for an unknown kind


class DynamoSlaAgent(PdRule):
    """Every 180 s: predicted requests x prompt tokens over the profiled prefill throughput per
    GPU (times min(1, TTFT correction)), and predicted requests x output tokens over the best
    decode throughput per GPU at the ITL target over its correction; ceil, at least one each;
    cut to the GPU budget prefill first. Targets: the scenario's TTFT and ITL SLOs."""

    name = "dynamo-sla"
    Params = DynamoSlaParams
    p: DynamoSlaParams

    def reset(self) -> None:
        super().reset()
        kind = self.p.load_predictor
        self.predict_req, self.predict_isl, self.predict_osl = (predictor(kind) for _ in range(3))
        # requests, prompt tokens, TTFT and ITL (arrival-weighted), their weight, seconds covered
        self._acc = [0.0] * 6
        self.osl = 0.0
        self.last: dict[str, float] = {}  # the last adjustment's figures (tests, logs)

    def _observe(self, raw: dict[str, float]) -> None:
        dt = self.ctx.decision_interval_s
        n = raw["interactive.arrival_rate"] * dt
        acc = self._acc
        acc[0] += n
        acc[1] += n * raw["interactive.prompt_tokens_mean"]
        if raw["interactive.ttft_p50_over_slo"] > 0 and raw["interactive.itl_p50_over_slo"] > 0:
            acc[2] += n * raw["interactive.ttft_p50_over_slo"]
            acc[3] += n * raw["interactive.itl_p50_over_slo"]
            acc[4] += n
        acc[5] += dt
        self.osl = raw["interactive.output_tokens_mean"]

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        if self.t > 0:
            self._observe(raw)
        idle = [0] * len(self.ctx.pools)
        if not self.every(self.p.adjustment_interval_s) or self.t == 0:
            return idle, None
        requests, prompt, ttft_w, itl_w, weight, covered = self._acc
        self._acc = [0.0] * 6
        ttft_slo, itl_slo = self.ctx.interactive_ttft_s, self.ctx.interactive_itl_s
        if requests <= 0 or weight <= 0 or self.osl <= 0 or ttft_slo is None or itl_slo is None:
            return idle, None  # Metrics.is_valid: no traffic, no adjustment (Dynamo #6985)
        isl = prompt / requests
        interval = self.p.adjustment_interval_s
        # the requests of one adjustment interval (decisions that do not divide it cover more or
        # less of it: Dynamo's interval is its own loop's)
        requests *= interval / covered
        ttft = ttft_w / weight * ttft_slo
        itl = itl_w / weight * itl_slo
        decode = self.pd(raw)[1]
        # correction factors: observed over what the profile expects now
        p_corr = ttft / self.profile.ttft_s(isl) if self.p.correction else 1.0
        context = isl + self.osl / 2
        per_decode = decode.running / max(1.0, decode.ready)
        expected_itl = self.profile.itl_s(max(1, round(per_decode)), context)
        d_corr = itl / expected_itl if self.p.correction else 1.0
        # the next interval's load
        self.predict_req.add(requests)
        self.predict_isl.add(isl)
        self.predict_osl.add(self.osl)
        n_req = max(0.0, self.predict_req.next())
        n_isl = max(1.0, self.predict_isl.next())
        n_osl = max(1.0, self.predict_osl.next())
        gp = self.ctx.pools["prefill"].gpus_per_instance
        gd = self.ctx.pools["decode"].gpus_per_instance
        thpt_p = n_req * n_isl / interval * min(1.0, p_corr)
        want_p = math.ceil(thpt_p / self.profile.prefill_tokens_per_gpu_s(n_isl) / gp - 1e-9)
        target_itl = itl_slo / d_corr if d_corr > 0 else itl_slo
        per_gpu = self.profile.decode_tokens_per_gpu_s(target_itl, n_isl + n_osl / 2)
        want_d = math.ceil(n_req * n_osl / interval / per_gpu / gd - 1e-9)
        want_p, want_d = max(self.p.min_endpoint, want_p), max(self.p.min_endpoint, want_d)
        budget = self.p.max_gpu_budget or self.ctx.max_gpus
        if budget and want_p * gp + want_d * gd > budget:
            scale = budget / (want_p * gp + want_d * gd)
            want_p = max(self.p.min_endpoint, round(want_p * scale))
            want_d = max(self.p.min_endpoint, round((budget - want_p * gp) / gd))
        self.last = {
            "requests": requests,
            "isl": isl,
            "ttft_s": ttft,
            "itl_s": itl,
            "p_correction": p_corr,
            "d_correction": d_corr,
            "next_requests": n_req,
            "next_isl": n_isl,
            "next_osl": n_osl,
            "prefill": want_p,
            "decode": want_d,
        }
        return self.to(raw, want_p, want_d), None


@dataclass
class HeteroScaleParams:
    """The decode-TPS rule (secondary sources of HeteroScale; values marked ours are ours)."""

    # (ours) an instance's target decode tokens/s: this share of what the profile says one
    # decode instance sustains within the ITL SLO at the scenario's lengths
    target_share: float = 0.8
    # prefill per decode instance. 0 (ours): what the profile says serves the observed lengths,
    # prefill time per request over decode time per request at the target (an operator sets
    # the ratio per service by profiling); before any request, the scenario's initial ratio
    pd_ratio: float = 0.0
    scale_out_above: float = 0.1  # scale out when needed / current > 1 + this
    scale_in_below: float = 0.1  # scale in when needed / current < 1 - this
    latency_trigger: float = 1.2  # ITL p95 above this x SLO: both pools x latency_growth
    latency_growth: float = 1.2
    scale_out_cooldown_s: float = 180.0
    scale_in_cooldown_s: float = 600.0

    def __post_init__(self) -> None:
        check_param(self, "target_share", 0 < self.target_share <= 1, "a number in (0, 1]")
        check_param(self, "pd_ratio", self.pd_ratio >= 0, "a number >= 0 (0: from the profile)")
        check_param(self, "scale_out_above", self.scale_out_above >= 0, "a number >= 0")
        check_param(self, "scale_in_below", 0 <= self.scale_in_below < 1, "a number in [0, 1)")
        check_param(self, "latency_trigger", self.latency_trigger >= 1, "a number >= 1")
        check_param(self, "latency_growth", self.latency_growth > 1, "a number > 1")
        for name in ("scale_out_cooldown_s", "scale_in_cooldown_s"):
            check_param(self, name, getattr(self, name) >= 0, "a number >= 0")


class HeteroScaleAgent(PdRule):
    """Decode instances = decode tokens/s over a per-instance target (proportional control, with
    a dead band), prefill instances at a fixed ratio to them; both pools x1.2 when the ITL p95
    passes 1.2 x its SLO; cool-downs of 180 s out and 600 s in."""

    name = "heteroscale"
    Params = HeteroScaleParams
    p: HeteroScaleParams

    def reset(self) -> None:
        super().reset()
        self.since_change = math.inf
        sc = self.ctx.scenario
        assert sc is not None  # profile_of checked it
        pre, dec = sc.pool_spec(Pool.PREFILL), sc.pool_spec(Pool.DECODE)
        assert pre is not None and dec is not None
        self.ratio = self.p.pd_ratio or pre.initial_instances / max(1, dec.initial_instances)
        self.per_instance = 0.0

    def _target_tps(self, raw: dict[str, float]) -> float:
        """Decode tokens/s per instance to aim at; sets the profiled P/D ratio on the way."""
        isl = raw["interactive.prompt_tokens_mean"]
        osl = raw["interactive.output_tokens_mean"]
        itl = self.ctx.interactive_itl_s or 0.05
        per_gpu = self.profile.decode_tokens_per_gpu_s(itl, (isl or 1024.0) + (osl or 256.0) / 2)
        target = self.p.target_share * per_gpu * self.ctx.pools["decode"].gpus_per_instance
        if not self.p.pd_ratio and isl > 0 and osl > 0:
            # seconds of prefill per request over seconds of decode at the target
            self.ratio = self.profile.ttft_s(isl) / (osl / target)
        return target

    def decide(self, raw: dict[str, float]) -> tuple[list[int], list[int] | None]:
        self.since_change += self.ctx.decision_interval_s
        prefill, decode = self.pd(raw)
        idle = [0] * len(self.ctx.pools)
        itl_slo = self.ctx.interactive_itl_s
        if (
            itl_slo is not None
            and raw["interactive.itl_p95_over_slo"] > self.p.latency_trigger
            and self.since_change >= self.p.scale_out_cooldown_s
        ):
            g = self.p.latency_growth
            grown = [max(v.live + 1, math.ceil(v.live * g)) for v in (prefill, decode)]
            return self._changed(self.to(raw, *grown)), None
        self.per_instance = self._target_tps(raw)
        needed = raw["decode.tokens_per_s"] / max(1e-9, self.per_instance)
        current = max(1, decode.live)
        ratio = needed / current
        out = ratio > 1 + self.p.scale_out_above and (
            self.since_change >= self.p.scale_out_cooldown_s
        )
        into = ratio < 1 - self.p.scale_in_below and (
            self.since_change >= self.p.scale_in_cooldown_s
        )
        if not (out or into):
            return idle, None
        want_d = max(1, math.ceil(needed - 1e-9))
        want_p = max(1, math.ceil(want_d * self.ratio - 1e-9))
        return self._changed(self.to(raw, want_p, want_d)), None

    def _changed(self, deltas: list[int]) -> list[int]:
        """``deltas``; a change (not a decision that changes nothing) starts the cool-downs."""
        if any(deltas):
            self.since_change = 0.0
        return deltas


PD_AGENTS: dict[str, type] = {"dynamo-sla": DynamoSlaAgent, "heteroscale": HeteroScaleAgent}

__all__ = ["PD_AGENTS", "DynamoSlaAgent", "HeteroScaleAgent", "Profile"]
