"""Chiron's reconstruction (issue 15): one test per defect of the first version, each of which
that version fails (``docs/agents.md`` says what each rule is and where it comes from)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agents import agent_env_kwargs, make_agent
from chiron_gym.control.chiron import (
    ChironGlobal,
    ChironLocal,
    ClusterFacts,
    GlobalParams,
    InstanceLimits,
    LocalParams,
    _CapState,
    cap_rule,
)
from chiron_gym.envs import AutoscaleEnv, PoolBounds
from chiron_gym.envs.feature_table import FEATURE_NAMES
from chiron_gym.sim import (
    Cluster,
    ClusterConfig,
    InstanceSpec,
    InstanceStats,
    LinearPerfModel,
    Outcome,
    Pool,
    PoolSpec,
    Workload,
)


def raw_features(**values: float) -> dict[str, float]:
    """Every feature 0, all three pools present, then ``values`` (dots written as ``__``)."""
    raw = dict.fromkeys(FEATURE_NAMES, 0.0)
    for p in ("interactive", "mixed", "batch"):
        raw[f"{p}.exists"] = 1.0
        raw[f"{p}.batch_cap"] = 64.0
    raw["batch.instance_tokens_per_s"] = 1000.0
    for k, v in values.items():
        raw[k.replace("__", ".")] = float(v)
    return raw


def facts(max_gpus: int | None = None, **pools: tuple[int, int]) -> ClusterFacts:
    bounds = {"interactive": (1, 10), "mixed": (0, 10), "batch": (0, 10), **pools}
    return ClusterFacts(
        pools={n: PoolBounds(True, lo, hi, 256, 1) for n, (lo, hi) in bounds.items()},
        max_gpus=max_gpus,
        cold_start_s=60.0,
        decision_interval_s=10.0,
    )


# ---- the local loop -----------------------------------------------------------------------------


def _judging(**kw: float) -> _CapState:
    """The state after an increase from a cap that ran 64 requests at 1,000 tokens/s."""
    return _CapState(judging=True, rate_before=1000.0, occ_before=64.0, **kw)


def test_throughput_backpressure_is_a_ratio_judged_only_while_the_cap_binds() -> None:
    """Demand-driven throughput that does not grow is no signal; a binding cap whose increase
    raised the running batch but lost throughput gives before / after, and halves."""
    p = LocalParams(settle_s=0.0)
    s = _judging()
    cap, tbp = cap_rule(
        p, s, cap=80, max_cap=256, latency=0.1, tokens=500.0, dt=1.0, binding=False, running=40
    )
    assert tbp == 0.0 and not s.judging  # not binding: no evidence, the judgment is dropped
    s = _judging()
    cap, tbp = cap_rule(
        p, s, cap=80, max_cap=256, latency=0.1, tokens=400.0, dt=1.0, binding=True, running=80
    )
    assert tbp == pytest.approx(2.5) and cap == 40  # throughput fell as the batch grew: halve
    s = _judging()
    cap, tbp = cap_rule(
        p, s, cap=80, max_cap=256, latency=0.1, tokens=1020.0, dt=1.0, binding=True, running=80
    )
    assert tbp == pytest.approx(1000 / 1020) and cap == 80  # a plateau: hold
    for _ in range(5):  # and it holds while the cap stays (the plateau is the cap's, not a blip)
        cap, _ = cap_rule(
            p, s, cap=cap, max_cap=256, latency=0.1, tokens=1020.0, dt=1.0, binding=True, running=80
        )
    assert cap == 80
    s = _judging()
    cap, _ = cap_rule(
        p, s, cap=80, max_cap=256, latency=0.1, tokens=1500.0, dt=1.0, binding=True, running=80
    )
    assert cap > 80  # the increase paid: grow again


def test_evictions_and_new_prefills_do_not_read_as_a_plateau() -> None:
    """The issue-38 case: on a mixed instance interactive arrivals evict batch requests, so the
    tokens/s after an increase fall with the running batch (before: 64 running, 1,000 tokens/s;
    after: 50 running, 700 tokens/s). The last version read 1.43 and halved; the running batch
    did not grow, so the increase never acted and there is no evidence about the engine."""
    p = LocalParams(settle_s=0.0)
    s = _judging()
    cap, tbp = cap_rule(
        p, s, cap=80, max_cap=256, latency=0.3, tokens=700.0, dt=1.0, binding=True, running=50
    )
    assert tbp == 0.0 and cap == 80  # no halving (and no growth: demand is under the reach)
    # the same tokens/s with the batch grown to 80: a saturated engine, halve
    s = _judging()
    cap, tbp = cap_rule(
        p, s, cap=80, max_cap=256, latency=0.3, tokens=700.0, dt=1.0, binding=True, running=80
    )
    assert tbp == pytest.approx(1000 / 700) and cap == 40


def test_caps_grow_back_whenever_backpressure_is_low_and_hold_in_the_band() -> None:
    """The last version grew a cap only while it bound: a halved cap stayed halved. Now a cap
    grows whenever backpressure is under ``grow_below`` and demand reaches it (running at least
    ``grow_reach`` of the cap), up to ``max_num_seqs``; between ``grow_below`` and 1 it holds."""
    p = LocalParams(settle_s=0.0)
    s = _CapState()
    cap, _ = cap_rule(
        p, s, cap=64, max_cap=256, latency=3.0, tokens=100.0, dt=2.0, binding=True, running=64
    )
    assert cap == 32
    for _ in range(20):  # latency recovers; demand keeps the instance near its cap
        cap, _ = cap_rule(
            p,
            s,
            cap=cap,
            max_cap=256,
            latency=0.2,
            tokens=100.0,
            dt=2.0,
            binding=False,
            running=cap,
        )
    assert cap == 256  # back up, to max_num_seqs and no further
    s = _CapState(bp=0.95)
    cap, _ = cap_rule(
        p, s, cap=64, max_cap=256, latency=0.95, tokens=100.0, dt=2.0, binding=False, running=64
    )
    assert cap == 64  # in the hold band
    s = _CapState()
    cap, _ = cap_rule(
        p, s, cap=64, max_cap=256, latency=0.2, tokens=100.0, dt=2.0, binding=False, running=10
    )
    assert cap == 64  # demand far below the cap: the cap limits nothing, and is not inflated


def test_local_loop_runs_per_instance_at_its_own_period() -> None:
    """Two instances of one pool get their own caps from their own latency, every period."""
    loop = ChironLocal(LocalParams(period_s=2.0, settle_s=0.0), interval_s=10.0)
    limits = {0: InstanceLimits(256, 0.1)}
    for t in (0.0, 2.0):
        fast = InstanceStats(0, 0, True, 64, 64, 5, 0, int(1000 * t), int(1000 * t), 20.0 * t)
        slow = InstanceStats(1, 0, True, 64, 64, 5, 0, int(1000 * t), int(1000 * t), 300.0 * t)
        changes = loop.update(t, [fast, slow], limits, (10, 0))
    # instance 0: ITL 20 ms of 100 ms, binding: grows; instance 1: ITL 300 ms: halves
    assert changes[0] > 64 and changes[1] == 32
    # and the environment runs it between decisions: caps differ within one pool
    env = AutoscaleEnv("interactive-bursty", **agent_env_kwargs("chiron"))
    env.reset(seed=0)
    calls = 0
    update = env._chiron_local.update

    def counting(*a: Any, **k: Any) -> dict[int, int]:
        nonlocal calls
        calls += 1
        return update(*a, **k)

    env._chiron_local.update = counting  # type: ignore[method-assign]
    env.step(np.full(3, env.layout.k))
    assert calls == round(env.scenario.decision_interval_s / 2.0) - 1


# ---- the global loop ----------------------------------------------------------------------------


def test_interactive_backpressure_counts_interactive_work_only() -> None:
    """Mixed instances full of batch work (the first version counted every running request there
    as interactive) hold 10 interactive requests: nothing to add to the interactive pool."""
    g = ChironGlobal(GlobalParams(max_step=16), facts())
    raw = raw_features(
        interactive__ready=4,
        interactive__running=200,
        mixed__ready=4,
        mixed__running=250,
        mixed__interactive_held=10,
        batch__ready=2,
    )
    assert g.deltas(raw)[0] == 0
    raw["mixed.interactive_held"] = 250.0  # the same figures as interactive work: scale up
    assert g.deltas(raw)[0] > 0


def test_the_mixed_pool_is_scaled_too() -> None:
    """With all three pools the first version never touched the mixed pool: it holds the
    interactive headroom (batch work fills it), so it grows with interactive demand."""
    g = ChironGlobal(GlobalParams(max_step=16), facts())
    raw = raw_features(interactive__ready=10, interactive__running=500, mixed__ready=0)
    deltas = g.deltas(raw)
    assert deltas[1] > 0


def test_batch_estimate_uses_capacity_not_last_window_throughput() -> None:
    """After an idle window measured tokens/s are 0, which sent the first version's pressure to
    infinity (batch instances started, then cancelled). Capacity comes from the profile now."""
    env = AutoscaleEnv("default", horizon_s=120.0)
    _, info = env.reset(seed=0)
    raw = info["raw"]
    assert raw["batch.tokens_per_s"] == 0.0 and raw["batch.queue"] > 0
    assert math.isfinite(raw["batch.wait_over_slack"]) and raw["batch.wait_over_slack"] < 20.0
    per = raw["batch.instance_tokens_per_s"]
    assert per > 100.0  # two batch instances at their cap, plus the mixed pool's spare
    assert raw["batch.capacity_tokens_per_s"] >= 2 * per


def test_interactive_work_has_priority_when_the_gpu_budget_binds() -> None:
    """Budget full; interactive overloaded and batch behind its deadlines: interactive gets the
    GPUs (the batch pool gives some back); batch does not grow."""
    g = ChironGlobal(GlobalParams(max_step=16), facts(max_gpus=12))
    raw = raw_features(
        interactive__ready=4,
        interactive__running=256,
        interactive__queue=200,
        mixed__ready=2,
        batch__ready=6,
        batch__queue=5000,
        batch__wait_over_slack=3.0,
        batch__required_tokens_per_s=20000,
        batch__capacity_tokens_per_s=6000,
        gpus_over_budget=1.0,
    )
    d = g.deltas(raw)
    assert d[2] < 0, d  # batch gives back
    assert d[0] >= 0 and d[2] <= 0


def test_evicted_batch_requests_do_not_starve_on_a_mixed_instance() -> None:
    """A mixed instance kept full of interactive work swaps its batch requests out; they go back
    to the global queue after ``swap_requeue_s`` and a batch instance finishes them (the first
    version left them on the mixed instance's swapped queue for good)."""
    spec = InstanceSpec(LinearPerfModel(), kv_capacity_blocks=4000, max_batch_cap=8)
    n_int, n_batch = 3000, 4
    arrival = [0.0] * n_batch + [0.5 + 0.1 * i for i in range(n_int)]
    klass = [1] * n_batch + [0] * n_int
    w = Workload.from_columns(
        arrival_s=arrival,
        klass=klass,
        prompt_tokens=[200] * (n_batch + n_int),
        output_tokens=[400] * n_batch + [300] * n_int,
        deadline_s=[1e6] * n_batch + [math.inf] * n_int,
    )
    pools = (PoolSpec(Pool.MIXED, spec, 1, 8), PoolSpec(Pool.BATCH, spec, 0, 8))
    for requeue, finished in ((None, False), (5.0, True)):
        cfg = ClusterConfig(pools, swap_requeue_s=requeue)
        c = Cluster(cfg, w, np.random.default_rng(0))
        c.run_until(2.0)
        c.scale(Pool.BATCH, 1)  # a batch instance joins after its cold start
        c.run_until(250.0)
        done = bool(np.all(c.outcome[:n_batch] != Outcome.PENDING))
        assert done == finished, (requeue, c.outcome[:n_batch])
        assert (c.requeued > 0) == finished


def test_chiron_agent_asks_for_its_environment() -> None:
    """The agent runs with the env's per-instance local loop and a step that does not clamp."""
    kw = agent_env_kwargs("chiron")
    assert kw["action_mode"] == "global" and kw["max_step_change"] >= 8
    env = AutoscaleEnv("default", **kw)
    obs, _ = env.reset(seed=0)
    a, _ = make_agent("chiron", env.agent_context()).predict(obs)
    assert a.shape == (3,)
    assert set(agent_env_kwargs("chiron-global-only")) == {"action_mode", "max_step_change"}
    assert agent_env_kwargs("kv-target")["initial_batch_cap"] == 256


def test_batch_work_deferred_past_the_horizon_is_at_risk() -> None:
    """Release every instance that serves batch, 3,000 batch requests queued, deadline after the
    horizon: the estimate puts them all at risk and the table's batch attainment counts them."""
    from agents.run.episode import attainment_with_risk

    env = AutoscaleEnv("default", horizon_s=60.0, max_step_change=2)
    env.reset(seed=0)
    done = False
    info: dict[str, Any] = {}
    while not done:  # mixed and batch pools down by 2 each step, caps kept
        _, _, term, trunc, info = env.step(np.array([2, 0, 0, 1, 1, 1]))
        done = term or trunc
    risk = info["at_risk"]["batch"]
    summary = env.backend.summary()["batch"]
    assert risk > 1000 and summary.pending >= risk
    assert info["batch_attainment"] > 0.99  # the summary alone: nothing decided late
    assert attainment_with_risk(summary, risk) < 0.5
    assert info["reward_terms"]["at_risk"] == -5.0 * (risk + info["at_risk"]["interactive"])


def test_parameter_specs_reach_the_loops() -> None:
    """``chiron[headroom_instances=4;period_s=5]``: the global field on the agent, the local one
    on the environment's loop; unknown names are named."""
    from agents import split_spec

    spec = "chiron[headroom_instances=4;period_s=5;z=2]"
    assert split_spec(spec) == ("chiron", {"headroom_instances": 4.0, "period_s": 5.0, "z": 2.0})
    kw = agent_env_kwargs(spec)
    assert kw["local_params"] == {"period_s": 5.0} and kw["z"] == 2.0
    env = AutoscaleEnv("default", **kw)
    env.reset(seed=0)
    agent = make_agent(spec, env.agent_context())
    assert agent.global_.p.headroom_instances == 4  # type: ignore[attr-defined]
    assert env._local_params.period_s == 5.0
    with pytest.raises(ValueError, match="unknown parameter 'headroom'"):
        split_spec("chiron[headroom=4]")
    with pytest.raises(ValueError, match=r"unknown parameter 'z'; known: period_s, "):
        split_spec("llumnix[z=1]")
    with pytest.raises(ValueError, match="rule agents with parameters only"):
        split_spec("static[x=1]")
    with pytest.raises(ValueError, match="rule agents with parameters only"):
        split_spec("llumnix-tuned[scale_up_below=5]")  # built from its table, not a record
    # a rule agent's record, typed as its defaults
    assert split_spec("dynamo-sla[load_predictor=constant;min_endpoint=2;correction=false]") == (
        "dynamo-sla",
        {"load_predictor": "constant", "min_endpoint": 2, "correction": False},
    )
    with pytest.raises(ValueError, match=r"min_endpoint = '1.5': expected a int"):
        split_spec("dynamo-sla[min_endpoint=1.5]")


@pytest.mark.parametrize("agent", ["llumnix-tuned", "chiron-tuned"])
def test_tuned_agents_have_a_current_entry_for_every_bundled_scenario(agent: str) -> None:
    """Each shipped table covers every bundled scenario as it is now (a stale entry, whose
    description changed, would be re-tuned silently at evaluation time), no tuned value sits on
    an edge of its grid unless that edge is a bound of the parameter's domain, and the agent
    plays the table's values."""
    import json

    import scenarios
    from agents.chiron_tuned import AXES as CHIRON_AXES
    from agents.llumnix_tuned import AXES as LLUMNIX_AXES
    from agents.tuning import TUNED
    from chiron_gym.scenario import load

    axes = {"llumnix-tuned": LLUMNIX_AXES, "chiron-tuned": CHIRON_AXES}[agent]
    table = json.loads((TUNED / f"{agent}.json").read_text())["scenarios"]
    for name in scenarios.names():
        entry = table[name]
        assert entry["description"] == load(name).description, name
        for ax in axes:
            grid, value = entry["grid"][ax.name], entry[ax.name]
            if value in (grid[0], grid[-1]):
                assert value in (ax.low, ax.high), (name, ax.name, value, grid)
    env = AutoscaleEnv("default", **agent_env_kwargs(agent))
    env.reset(seed=0)
    played = make_agent(agent, env.agent_context()).params()  # type: ignore[attr-defined]
    flat = {**played, **played.get("global", {})}
    name = axes[0].name
    assert flat[name] == table["default"][name]
