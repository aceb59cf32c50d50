"""Scenario files: bundled ones load and run; malformed ones fail naming the file and key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scenarios
from chiron_gym.scenario import ScenarioError, load
from chiron_gym.sim import Pool


@pytest.mark.parametrize("name", scenarios.names())
def test_bundled_scenarios_load(name: str) -> None:
    """Every bundled scenario parses and generates a non-empty workload."""
    scenario = load(name)
    assert scenario.horizon_s > 0 and len(scenario.workload(0)) > 0


def test_workload_is_a_pure_function_of_the_seed() -> None:
    """Same seed, same requests; another seed, other requests."""
    s = load("default")
    a, b, c = s.workload(7), s.workload(7), s.workload(8)
    for col in ("arrival_s", "klass", "prompt_tokens", "output_tokens"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.arrival_s, c.arrival_s)


def write(tmp_path: Path, text: str) -> Path:
    original = scenarios.path("default").read_text()
    p = tmp_path / "broken.toml"
    p.write_text(text(original) if callable(text) else text)  # type: ignore[operator]
    return p


def test_typo_in_a_key_names_the_key_and_the_near_name(tmp_path: Path) -> None:
    """An unknown key is rejected with the file, the key and the nearest valid key."""
    p = write(tmp_path, lambda t: t.replace("decision_interval_s", "decison_interval_s"))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError) as e:
        load(p)
    msg = str(e.value)
    assert str(p) in msg and "'decison_interval_s'" in msg and "'decision_interval_s'" in msg


def test_nested_typo_is_reported_with_its_path(tmp_path: Path) -> None:
    """Keys inside tables are named with their full dotted path."""
    p = write(
        tmp_path,
        lambda t: t.replace(
            "max_batch_cap = 256", "max_batch_cap = 256\ncold_start = { meadian_s = 90.0 }"
        ),  # type: ignore[arg-type]
    )
    with pytest.raises(
        ScenarioError, match=r"instance\.cold_start\.meadian_s.*instance\.cold_start\.median_s"
    ):
        load(p)


def test_unknown_profile_is_named_with_the_nearest(tmp_path: Path) -> None:
    """A mistyped profile name fails naming the scenario file, the key and the nearest profile."""
    p = write(tmp_path, lambda t: t.replace('"a100-llama3-8b-tp1"', '"a100-llama3-8b-tp2"'))  # type: ignore[arg-type]
    with pytest.raises(
        ScenarioError, match=r"instance\.profile = 'a100-llama3-8b-tp2'.*a100-llama3-8b-tp1"
    ):
        load(p)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("horizon_s = 600.0", 'horizon_s = "long"', "horizon_s = 'long': expected a number"),
        ("horizon_s = 600.0", "horizon_s = -5.0", "expected a number > 0"),
        ("batch_cap = 128", "batch_cap = 100000", "at most instance.max_batch_cap"),
        ('kind = "poisson"', 'kind = "poison"', "expected one of 'poisson', 'gamma'"),
    ],
)
def test_wrong_types_and_impossible_values(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    """Wrong types and impossible values are named with what was expected."""
    p = write(tmp_path, lambda t: t.replace(old, new, 1))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        load(p)


def test_every_accepted_batch_slo_key_is_used(tmp_path: Path) -> None:
    """A key the validator accepts is not silently dropped: slo.batch.ttft_s reaches the SLO."""
    p = write(tmp_path, lambda t: t.replace("[slo.batch]\n", "[slo.batch]\nttft_s = 30.0\n"))  # type: ignore[arg-type]
    slo = load(p).cluster.batch_slo
    assert (slo.ttft_s, slo.itl_s) == (30.0, 0.5)
    assert load("default").cluster.batch_slo.ttft_s is None


@pytest.mark.parametrize("name", scenarios.names())
def test_every_bundled_scenario_simulates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`chiron simulate --scenario NAME --seed 0 --json` runs and accounts for every request."""
    import json

    from chiron_gym.cli import main

    assert main(["simulate", "--scenario", name, "--seed", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    arrived = 0
    for c in out["classes"].values():
        assert c["arrived"] == c["met"] + c["late"] + c["rejected"] + c["pending"]
        arrived += c["arrived"]
    assert arrived > 0


def test_at_least_the_issue_scenarios_ship() -> None:
    wanted = {
        "default",
        "interactive-steady",
        "interactive-bursty",
        "mixed-diurnal",
        "batch-flood",
        "flash-crowd",
        "azure-code-like",
        "azure-conv-like",
        "large-70b",
    }
    assert set(scenarios.names()) >= wanted
    large = load("large-70b")
    gpus = sum(p.initial_instances * p.instance.gpus for p in large.cluster.pools)
    assert large.max_gpus == 50 and 40 <= gpus <= 50
    flood = load("batch-flood")
    assert sum(s.arrival.get("count", 0) for s in flood.sources) >= 100_000


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'kind = "poisson", rate_per_s = 6.0',
            'kind = "poisson", rate_pre_s = 6.0',
            r"unknown key 'workload\[0\]\.arrival\.rate_pre_s'; did you mean "
            r"'workload\[0\]\.arrival\.rate_per_s'",
        ),
        (
            "initial = 2\nbatch_cap = 64",
            "initial = 2\nmin = 3\nbatch_cap = 64",
            r"pools\.interactive\.initial = 2: expected between min \(3\)",
        ),
        (
            "[pools.interactive]",
            "[budget]\nmax_gpus = 2\n\n[pools.interactive]",
            r"budget\.max_gpus = 2: expected at least the initial pools' 5 GPUs",
        ),
        (
            'kind = "lognormal", mean = 1000',
            'kind = "empirical", table = "azure-chat"',
            r"workload\[0\]\.prompt\.table = 'azure-chat'",
        ),
        (
            "[slo.interactive]",
            "[reward]\ngpu_costs = 1.0\n\n[slo.interactive]",
            r"unknown key 'reward\.gpu_costs'; did you mean 'reward\.gpu_cost'",
        ),
        (
            "max_batch_cap = 256",
            'max_batch_cap = 256\nprefix_caching = "yes"',
            r"instance\.prefix_caching = 'yes': expected true or false",
        ),
        (
            "high = 2000 }\n\n",
            "high = 2000 }\nprefix = { system_tokens = 4000, max_prompt_tokens = 2000 }\n\n",
            r"workload\[0\]\.prefix\.max_prompt_tokens = 2000: expected more than system_tokens",
        ),
        (
            "[pools.interactive]\ninitial = 2",
            "[pools.interactive]\nsleep_cost = 2.0\ninitial = 2",
            r"pools\.interactive\.sleep_cost = 2\.0: expected a number in \[0, 1\]",
        ),
        (
            "max_batch_cap = 256",
            "max_batch_cap = 256\ncold_start = { median_s = 60.0, phases = { weights = 5.0 } }",
            r"instance\.cold_start\.median_s = 60\.0: expected absent when phases are given",
        ),
        (
            "[pools.interactive]",
            "[routing]\nprefix_awre = true\n\n[pools.interactive]",
            r"unknown key 'routing\.prefix_awre'; did you mean 'routing\.prefix_aware'",
        ),
    ],
)
def test_new_keys_are_validated(tmp_path: Path, old: str, new: str, expected: str) -> None:
    p = write(tmp_path, lambda t: t.replace(old, new, 1))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match=expected):
        load(p)


def test_trace_replay_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trace replays a file through a scenario's cluster; every request is accounted for."""
    import json

    from chiron_gym.cli import main
    from chiron_gym.workload.trace import write_trace
    from tests.workload.test_trace import synthetic

    p = write_trace(tmp_path / "t.csv", synthetic(n=300), "azure")
    args = [
        "simulate",
        "--scenario",
        "default",
        "--trace",
        str(p),
        "--batch-fraction",
        "0.2",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    total = sum(c["arrived"] for c in out["classes"].values())
    assert total == 300 and out["classes"]["batch"]["arrived"] > 20


@pytest.mark.parametrize("name", ["chiron-paper", "chiron-paper-70b"])
def test_the_paper_scenarios_bind_their_deadlines(name: str) -> None:
    """Up to 50 A100s, bursty chat, a batch queue whose deadline falls inside the horizon."""
    sc = load(name)
    assert sc.max_gpus == 50
    batch = [s for s in sc.sources if s.klass == 1]
    assert batch and all(s.arrival["kind"] == "bulk" for s in batch)
    w = sc.workload(0)
    deadlines = w.deadline_s[w.klass == 1]
    assert len(deadlines) >= (100_000 if name == "chiron-paper" else 30_000)
    assert deadlines.max() < sc.horizon_s  # the deadline binds inside the episode
    chat = [s for s in sc.sources if s.klass == 0]
    assert chat[0].arrival["kind"] == "gamma" and chat[0].arrival["cv"] > 1


def test_prefix_keys_reach_the_cluster(tmp_path: Path) -> None:
    """``prefix_caching``, ``[routing] prefix_aware``, ``[workload.prefix]``, a warm pool and
    cold-start phases all land where the simulator reads them."""
    sc = load("chat-prefix")
    assert all(p.instance.prefix_caching for p in sc.cluster.pools)
    assert sc.cluster.prefix_routing
    w = sc.workload(0)
    assert w.prefix_blocks is not None and w.prefix_block_tokens == 64
    warm = load("flash-crowd-warm").cluster.pools[0]
    assert warm.warm_instances == 2 and warm.wake_s == 1.0 and warm.sleep_cost == 0.1
    assert dict(warm.instance.cold_start.phases)["weights"] == 4.44
    assert warm.instance.cold_start.median_s == pytest.approx(74.54)
    # off by default: every other bundled scenario is as it was
    for name in scenarios.names():
        if name not in ("chat-prefix", "flash-crowd-warm"):
            other = load(name)
            assert not other.cluster.prefix_routing
            assert not any(
                p.instance.prefix_caching or p.warm_instances for p in other.cluster.pools
            )


def test_failures_load_from_the_scenario(tmp_path: Path) -> None:
    text = (
        scenarios.path("default")
        .read_text()
        .replace(
            "[pools.interactive]\ninitial = 2\n",
            '[failures]\non_instance_failure = "reject"\nat = [{ t_s = 300.0, pool = "mixed" }]\n\n'
            "[pools.interactive]\ninitial = 2\nfailures_per_gpu_hour = 0.5\n"
            "reclaims_per_hour = 2.0\nreclaim_notice_s = 30.0\nstockout_probability = 0.25\n",
        )
    )
    (tmp_path / "f.toml").write_text(text)
    cluster = load(tmp_path / "f.toml").cluster
    assert cluster.on_failure == "reject"
    assert cluster.failures_at == ((300.0, Pool.MIXED),)
    rates = {p.pool: p.failures_per_gpu_hour for p in cluster.pools}
    assert rates[Pool.INTERACTIVE] == 0.5 and rates[Pool.MIXED] == 0.0
    spot = {p.pool: (p.reclaims_per_hour, p.reclaim_notice_s) for p in cluster.pools}
    assert spot[Pool.INTERACTIVE] == (2.0, 30.0) and spot[Pool.MIXED] == (0.0, 120.0)
    assert [p.stockout_probability for p in cluster.pools if p.pool == Pool.INTERACTIVE] == [0.25]
