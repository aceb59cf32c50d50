"""Disaggregated scenarios (issue 41): the bundled ones and their aggregated twins run, their keys
are checked naming the key, ``chiron sweep`` lays out prefill/decode instances, and what does
not take prefill and decode pools yet (the environment, real servers) refuses them by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import scenarios
from chiron_gym.cli import main
from chiron_gym.scenario import ScenarioError, load
from chiron_gym.sim import Pool
from tests.conftest import require_data

SMALL = """
horizon_s = 60.0
decision_interval_s = 10.0

[instance]
profile = "h100-llama2-7b-tp1"

[pools.prefill]
initial = 1

[pools.decode]
initial = 2

[transfer]
link = "nvlink"
latency_s = 0.001

[[workload]]
class = "interactive"
arrival = { kind = "poisson", rate_per_s = 4.0 }
prompt = { kind = "lognormal", mean = 1000, cv = 0.5, high = 4000 }
output = { kind = "lognormal", mean = 100, cv = 0.5, high = 1000 }
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pd.toml"
    p.write_text(text)
    return p


def test_a_small_disaggregated_scenario_loads_and_simulates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _write(tmp_path, SMALL)
    cluster = load(p).cluster
    assert cluster.disaggregated and {s.pool for s in cluster.pools} == {Pool.PREFILL, Pool.DECODE}
    assert cluster.kv_link.bytes_per_s == 450e9 and cluster.kv_link.latency_s == 0.001
    assert main(["simulate", "--scenario", str(p), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    c = out["classes"]["interactive"]
    assert c["arrived"] == c["met"] + c["late"] + c["rejected"] + c["pending"] > 100
    assert out["kv_transfers"] >= c["met"] + c["late"] and out["kv_transfer_mean_s"] > 0


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("[pools.decode]\ninitial = 2\n", "", r"pools\.decode = None: expected a table: a "),
        ('link = "nvlink"', 'link = "infiniband"', r"transfer\.link = 'infiniband': expected one"),
        ("latency_s = 0.001", "latency = 0.001", r"unknown key 'transfer\.latency'"),
        ("[pools.prefill]", "[pools.prefil]", r"unknown key 'pools\.prefil'"),
    ],
)
def test_bad_disaggregation_keys_name_the_key(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    with pytest.raises(ScenarioError, match=expected):
        load(_write(tmp_path, SMALL.replace(old, new, 1)))


def test_a_transfer_section_needs_prefill_and_decode_pools(tmp_path: Path) -> None:
    text = scenarios.path("default").read_text() + '\n[transfer]\nlink = "rdma"\n'
    with pytest.raises(ScenarioError, match=r"transfer = .*: expected absent"):
        load(_write(tmp_path, text))


def test_the_environment_and_real_servers_refuse_prefill_and_decode_pools(tmp_path: Path) -> None:
    from chiron_gym.backends.vllm import VllmBackend
    from chiron_gym.envs import AutoscaleEnv

    p = _write(tmp_path, SMALL)
    with pytest.raises(ValueError, match="prefill and decode pools"):
        AutoscaleEnv(str(p))
    backend = VllmBackend(load(p), endpoints={"prefill": ["http://127.0.0.1:9"]})
    with pytest.raises(ValueError, match="prefill and decode pools are simulated only"):
        backend.reset(0)
    backend.close()


@pytest.mark.parametrize("name", scenarios.disaggregated_names())
def test_bundled_disaggregated_scenarios_simulate(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    require_data("aiconfigurator")  # their profiles are composed from the kernel tables
    assert main(["simulate", "--scenario", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    c = out["classes"]["interactive"]
    assert c["arrived"] == c["met"] + c["late"] + c["rejected"] + c["pending"] > 10_000
    assert c["attainment"] > 0.5
    assert ("kv_transfers" in out) == name.startswith("disaggregated/pd-")


def test_sweep_lays_out_prefill_and_decode_instances(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sweep", "--profile", "h100-llama2-7b-tp1", "--concurrency", "4,16", "--json"]
    assert main([*args, "--layout", "1p2d"]) == 0
    pd = json.loads(capsys.readouterr().out)
    assert main([*args, "--layout", "3"]) == 0
    agg = json.loads(capsys.readouterr().out)
    for a, b in zip(pd, agg, strict=True):
        assert a["measured"] == b["measured"] > 0
        # three GPUs either way: per-GPU throughput is a third of the total
        assert a["output_tokens_per_s_per_gpu"] == pytest.approx(a["output_tokens_per_s"] / 3)
        assert a["ttft_mean_s"] > 0 and a["tpot_mean_s"] > 0


@pytest.mark.parametrize("layout", ["0", "2p0d", "p2d", "two"])
def test_a_bad_layout_exits_2_naming_it(layout: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["sweep", "--profile", "h100-llama2-7b-tp1", "--layout", layout, "--json"])
    assert rc == 2
    assert f"layout {layout!r}: expected N" in capsys.readouterr().err
