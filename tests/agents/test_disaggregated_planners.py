"""The planners of disaggregated serving (issue 41) decide as their sources say, on hand-built
traces of metrics whose replica counts are computed here by hand.

The profile is linear (``t = 10 ms + 0.1 ms per token``, nothing else), so every figure the
planners read from it is arithmetic: a 3,000-token prompt alone prefills in 0.31 s; a decode
batch of ``n`` takes ``10 + 0.1 n`` ms, so within a 50 ms ITL the largest batch is the cap (256:
35.6 ms, 3,595.5 tokens/s per GPU on 2 GPUs)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from agents import make_agent
from agents.disaggregated import DynamoSlaAgent, DynamoSlaParams, HeteroScaleAgent
from agents.load_predictors import Constant, Kalman
from chiron_gym.envs import AutoscaleEnvV1
from chiron_gym.scenario import load
from chiron_gym.sim import LinearPerfModel
from tests.conftest import require_data

LINEAR = LinearPerfModel(
    overhead_s=0.01, per_token_s=1e-4, per_seq_s=0.0, prefill_pair_s=0.0, decode_context_s=0.0
)
DT = 30.0


def _env(**kwargs: Any) -> AutoscaleEnvV1:
    require_data("aiconfigurator")  # the scenario's profile is composed (then replaced here)
    sc = load("disaggregated/pd-qwen32b-h100")
    pools = tuple(
        replace(
            p,
            instance=replace(
                p.instance,
                perf_model=LINEAR,
                kv_capacity_blocks=125_000,  # 2 M tokens: the cap binds, not the KV cache
                max_batch_cap=256,
                gpus=2,
            ),
        )
        for p in sc.cluster.pools
    )
    sc = replace(sc, cluster=replace(sc.cluster, pools=pools))
    return AutoscaleEnvV1(sc, max_step_change=16, **kwargs)


def _raw(env: AutoscaleEnvV1, **values: float) -> dict[str, float]:
    """A window of the hand-built trace: the reset observation's features with ``values``
    (double underscores for dots)."""
    _, info = env.reset(seed=0)
    raw = dict(info["raw"])
    for k, v in values.items():
        raw[k.replace("__", ".")] = v
    return raw


def _feed(agent: Any, raws: list[dict[str, float]]) -> list[list[int]]:
    """The agent's instance changes, one decision per window, as ``RuleAgent.act`` does."""
    out = []
    for raw in raws:
        deltas, _ = agent.decide(raw)
        agent.t += DT
        out.append(deltas)
    return out


# 4 req/s, 3,000-token prompts, 150-token outputs; TTFT median 0.31 s (= the profile's: no
# correction), ITL median 11 ms at 10 requests per decode instance (= the profile's)
STEADY = {
    "interactive__arrival_rate": 4.0,
    "interactive__prompt_tokens_mean": 3000.0,
    "interactive__output_tokens_mean": 150.0,
    "interactive__ttft_p50_over_slo": 0.31 / 0.5,
    "interactive__itl_p50_over_slo": 0.011 / 0.05,
    "decode__running": 20.0,
}


def test_the_profile_is_what_the_linear_model_gives() -> None:
    env = _env()
    agent = make_agent("dynamo-sla", env.agent_context())
    assert isinstance(agent, DynamoSlaAgent)
    prof = agent.profile
    assert prof.ttft_s(3000) == pytest.approx(0.31)
    assert prof.prefill_tokens_per_gpu_s(3000) == pytest.approx(3000 / 0.31 / 2)
    assert prof.decode_tokens_per_gpu_s(0.05, 3075) == pytest.approx(256 / 0.0356 / 2)
    # a 25 ms target: the largest batch is 150 (10 + 15 ms)
    assert prof.decode_tokens_per_gpu_s(0.025, 3075) == pytest.approx(150 / 0.025 / 2)


def test_dynamo_sla_sets_replicas_every_180_s_by_its_formulas() -> None:
    env = _env()
    agent = DynamoSlaAgent(env.agent_context(), DynamoSlaParams(load_predictor="constant"))
    raw = _raw(env, **STEADY)
    out = _feed(agent, [raw] * 7)  # decisions at 0, 30, ..., 180 s
    assert all(d == [0, 0, 0, 0, 0] for d in out[:6])  # nothing before the first interval
    # 6 windows x 30 s x 4 req/s = 720 requests in 180 s: prefill 720 x 3,000 / 180 = 12,000
    # tokens/s over 4,838.7 per GPU and 2 GPUs: ceil(1.24) = 2 (as there are: no change); decode
    # 720 x 150 / 180 = 600 tokens/s over 3,595.5 per GPU and 2 GPUs: ceil(0.08) = 1 (one less)
    assert agent.last["p_correction"] == pytest.approx(1.0)
    assert agent.last["d_correction"] == pytest.approx(1.0)
    assert (agent.last["prefill"], agent.last["decode"]) == (2, 1)
    assert out[6] == [0, 0, 0, 0, -1]


def test_dynamo_sla_corrections_and_budget() -> None:
    env = _env()
    agent = DynamoSlaAgent(env.agent_context(), DynamoSlaParams(load_predictor="constant"))
    # 16 req/s, TTFT at half the profile's (min(1, 0.5) halves prefill demand), ITL twice the
    # profile's (the decode target halves to 25 ms: 3,000 tokens/s per GPU)
    raw = _raw(
        env,
        **{
            **STEADY,
            "interactive__arrival_rate": 16.0,
            "interactive__ttft_p50_over_slo": 0.155 / 0.5,
            "interactive__itl_p50_over_slo": 0.022 / 0.05,
        },
    )
    _feed(agent, [raw] * 7)
    last = agent.last
    assert last["p_correction"] == pytest.approx(0.5)
    assert last["d_correction"] == pytest.approx(2.0)
    requests = 16 * 180
    want_p = math.ceil(requests * 3000 / 180 * 0.5 / (3000 / 0.31 / 2) / 2)  # 3
    want_d = math.ceil(requests * 150 / 180 / (150 / 0.025 / 2) / 2)  # 1
    assert (last["prefill"], last["decode"]) == (want_p, want_d) == (3, 1)
    # a budget of 6 GPUs (8 wanted): prefill scaled first, round(3 x 6 / 8) = 2; decode the rest
    agent = DynamoSlaAgent(
        env.agent_context(), DynamoSlaParams(load_predictor="constant", max_gpu_budget=6)
    )
    _feed(agent, [raw] * 7)
    assert (agent.last["prefill"], agent.last["decode"]) == (2, 1)


def test_dynamo_sla_skips_an_interval_without_traffic() -> None:
    env = _env()
    agent = make_agent("dynamo-sla", env.agent_context())
    quiet = _raw(env, **{**STEADY, "interactive__arrival_rate": 0.0})
    out = _feed(agent, [quiet] * 13)
    assert all(d == [0, 0, 0, 0, 0] for d in out) and agent.last == {}


def test_the_load_predictors() -> None:
    c = Constant()
    assert c.next() == 0.0
    for v in (3.0, 5.0):
        c.add(v)
    assert c.next() == 5.0
    k = Kalman()
    for v in (10.0, 20.0, 30.0, 40.0):
        k.add(v)
    assert k.next() == 40.0  # the last value until five points
    for v in (50.0, 60.0, 70.0, 80.0):
        k.add(v)
    assert 80.0 < k.next() < 100.0  # a rising line is extrapolated up


def test_heteroscale_scales_decode_on_tokens_per_s_and_prefill_at_the_ratio() -> None:
    env = _env()
    agent = make_agent("heteroscale", env.agent_context())
    assert isinstance(agent, HeteroScaleAgent)
    per_instance = 0.8 * 256 / 0.0356  # 80 % of one decode instance within the ITL SLO
    busy = _raw(env, **{**STEADY, "decode__tokens_per_s": 1.74 * 2 * per_instance})
    out = _feed(agent, [busy, busy])
    # needed 3.48 instances for 2: out by more than 10 % -> 4 decode; prefill at the profiled
    # ratio, 0.31 s of prefill per request over 150 tokens / 5,752.8 tokens/s of decode (11.9
    # prefill instances per decode instance): 48, cut to the pool's 6
    assert agent.per_instance == pytest.approx(per_instance)
    assert agent.ratio == pytest.approx(0.31 / (150 / per_instance))
    assert out[0] == [0, 0, 0, 4, 2]
    assert out[1] == [0, 0, 0, 0, 0]  # 180 s cool-down
    calm = _raw(env, **{**STEADY, "decode__tokens_per_s": 0.95 * 2 * per_instance})
    assert _feed(agent, [calm] * 30) == [[0] * 5] * 30  # inside the dead band
    # the latency trigger: ITL p95 at 1.5x its SLO grows both pools by 1.2 (2 -> 3)
    slow = _raw(env, **{**STEADY, "interactive__itl_p95_over_slo": 1.5})
    assert _feed(make_agent("heteroscale", env.agent_context()), [slow]) == [[0, 0, 0, 1, 1]]


@pytest.mark.parametrize("agent", ["dynamo-sla", "heteroscale", "chiron"])
def test_planners_run_an_episode_and_every_request_is_accounted_for(agent: str) -> None:
    from agents.run.episode import run_episode

    require_data("aiconfigurator")
    ep = run_episode(agent, "disaggregated/pd-qwen32b-h100", 0, env_kwargs={"horizon_s": 900.0})
    row = ep.row
    assert row["interactive_attainment"] > 0.3
    assert row["gpu_hours"] > 0


def test_aggregated_planners_refuse_what_they_cannot_scale() -> None:
    from chiron_gym.envs import AutoscaleEnv

    ctx = AutoscaleEnv("default").agent_context()
    with pytest.raises(ValueError, match="no prefill and decode pools"):
        make_agent("dynamo-sla", ctx)
    require_data("aiconfigurator")
    with pytest.raises(ValueError, match="Autoscale-v1"):
        AutoscaleEnv("disaggregated/pd-qwen32b-h100")


def test_dynamo_sla_sizes_an_interval_the_decisions_do_not_divide() -> None:
    """Decisions every 40 s: the first adjustment (at 200 s) covers 200 s of arrivals, scaled
    to the planner's 180 s interval, so demand is not overstated."""
    env = _env(decision_interval_s=40.0)
    agent = DynamoSlaAgent(env.agent_context(), DynamoSlaParams(load_predictor="constant"))
    raw = _raw(env, **STEADY)
    out = []
    for _ in range(6):  # decisions at 0, 40, ..., 200 s
        out.append(agent.decide(raw)[0])
        agent.t += 40.0
    assert agent.last["requests"] == pytest.approx(4.0 * 180)


def test_heteroscale_cool_down_starts_only_with_a_change() -> None:
    env = _env()
    agent = make_agent("heteroscale", env.agent_context())
    assert isinstance(agent, HeteroScaleAgent)
    per_instance = 0.8 * 256 / 0.0356
    # 1.5x what 6 decode instances sustain, with both pools at their maximum (6): the rule
    # asks for more, nothing can change
    full = _raw(
        env,
        **{
            **STEADY,
            "decode__tokens_per_s": 1.5 * 6 * per_instance,
            "decode__ready": 6.0,
            "prefill__ready": 6.0,
        },
    )
    assert _feed(agent, [full]) == [[0, 0, 0, 0, 0]]
    assert agent.since_change == math.inf  # no change: no cool-down
    grow = _raw(env, **{**STEADY, "decode__tokens_per_s": 1.5 * 2 * per_instance})
    assert _feed(agent, [grow])[0][4] == 1  # at once, not 180 s later


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"adjustment_interval_s": 0.0}, r"adjustment_interval_s = 0.0: expected a number > 0"),
        ({"min_endpoint": 0}, r"min_endpoint = 0: expected an integer >= 1"),
        ({"load_predictor": "arima"}, r"load_predictor 'arima': expected one of constant, kalman"),
    ],
)
def test_bad_dynamo_sla_parameters_are_refused(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DynamoSlaParams(**params)


def test_bad_heteroscale_parameters_are_refused() -> None:
    from agents.disaggregated import HeteroScaleParams

    with pytest.raises(ValueError, match=r"latency_trigger = 0.5: expected a number >= 1"):
        HeteroScaleParams(latency_trigger=0.5)
    with pytest.raises(ValueError, match=r"target_share = 0.0: expected a number in \(0, 1\]"):
        HeteroScaleParams(target_share=0.0)
