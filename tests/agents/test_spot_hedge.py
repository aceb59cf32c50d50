"""``spot-hedge`` (SkyServe's replica policy over spot and on-demand pools, issue 42) decides as
SkyPilot's autoscaler does, on a hand-built trace of request rates and spot availability."""

from __future__ import annotations

import math
from typing import Any

import pytest

from agents import make_agent
from agents.run.episode import run_episode
from agents.spot import SpotHedgeAgent, SpotHedgeParams, requests_per_s
from chiron_gym.envs import AutoscaleEnv

DT = 10.0  # spot-mix's decision interval


def _agent(**params: Any) -> tuple[SpotHedgeAgent, dict[str, float]]:
    env = AutoscaleEnv("spot-mix", max_step_change=16)
    _, info = env.reset(seed=0)
    agent = SpotHedgeAgent(env.agent_context(), SpotHedgeParams(**params))
    return agent, dict(info["raw"])


def _step(agent: SpotHedgeAgent, raw: dict[str, float], **values: float) -> list[int]:
    r = {**raw, **{k.replace("__", "."): v for k, v in values.items()}}
    deltas, _ = agent.decide(r)
    agent.t += DT
    return deltas


def test_the_target_moves_after_its_delays_and_spot_is_over_provisioned() -> None:
    # 2 requests/s per replica: the rate x 1 / 2 replicas
    agent, raw = _agent(target_qps_per_replica=2.0, upscale_delay_s=30.0, downscale_delay_s=60.0)
    assert agent.target == 3  # 2 + 2 instances at the start, less the one over-provisioned
    pools = {"interactive__ready": 2.0, "mixed__ready": 4.0, "mixed__starting": 0.0}
    # 13 req/s asks for 7 replicas: nothing for 30 s (3 decisions), then spot to 7 + 1
    outs = [_step(agent, raw, interactive__arrival_rate_1m=13.0, **pools) for _ in range(3)]
    assert [o[1] for o in outs] == [0, 0, 4]  # mixed: 4 live -> 8
    assert agent.target == 7
    # the spot pool is short (4 ready of 8): on demand covers min(7, 8 - 4) = 4
    assert outs[2][0] == 4 - 2
    # 4 req/s asks for 2: the target falls only after 60 s below it
    calm = {"interactive__ready": 4.0, "mixed__ready": 8.0}
    outs = [_step(agent, raw, interactive__arrival_rate_1m=4.0, **calm) for _ in range(6)]
    assert agent.target == 2 and outs[-1][1] == 3 - 8  # spot to 2 + 1
    assert outs[-1][0] == 1 - 4  # spot all ready: on demand back to its floor of 1
    assert all(o[1] == 0 for o in outs[:-1])


def test_a_reclaimed_spot_replica_is_covered_on_demand_and_replaced() -> None:
    agent, raw = _agent(target_qps_per_replica=2.0)
    # target 3, provision 4: one spot replica reclaimed (3 live, 2 ready: one starting)
    out = _step(
        agent,
        raw,
        interactive__arrival_rate_1m=6.0,
        interactive__ready=1.0,
        mixed__ready=2.0,
        mixed__starting=1.0,
    )
    assert out[1] == 1  # spot back to 4
    assert out[0] == min(3, 4 - 2) - 1  # on demand covers the 2 spot replicas not ready
    no_fallback, raw2 = _agent(target_qps_per_replica=2.0, dynamic_ondemand_fallback=False)
    out = _step(
        no_fallback,
        raw2,
        interactive__arrival_rate_1m=6.0,
        interactive__ready=1.0,
        mixed__ready=2.0,
        mixed__starting=1.0,
    )
    assert out[0] == 0  # the floor of 1 only


def test_the_target_rate_comes_from_the_profile() -> None:
    agent, _ = _agent()
    rate = requests_per_s(agent.spot_spec, 1000.0, 200.0)  # spot-mix's interactive means
    assert agent.qps == pytest.approx(0.8 * rate) and 1.0 < rate < 50.0
    assert math.isfinite(agent.qps)


def test_spot_hedge_needs_a_spot_pool_and_sane_parameters() -> None:
    with pytest.raises(ValueError, match="spot-hedge needs an on-demand interactive pool"):
        make_agent("spot-hedge", AutoscaleEnv("default").agent_context())
    with pytest.raises(ValueError, match=r"num_overprovision = -1: expected an integer >= 0"):
        SpotHedgeParams(num_overprovision=-1)


def test_spot_hedge_plays_spot_mix_with_every_request_accounted_for() -> None:
    ep = run_episode("spot-hedge", "spot-mix", 0, env_kwargs={"horizon_s": 900.0})
    row = ep.row
    assert row["interactive_attainment"] > 0.9 and row["gpu_hours"] > 0
    assert row["interactive_arrived"] + row["batch_arrived"] > 1000
